// The CNI_* environment of one plugin call, validated. Every message names
// the variable and says what a valid value looks like, because the reader is
// whoever configured the runtime.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidEnvError } from './errors.js';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

export interface CniEnv {
  command: CniCommand;
  /** '' for GC and STATUS, which name no container. */
  containerId: string;
  /** '' when the runtime gave none (always allowed for DEL). */
  netns: string;
  /** '' for GC and STATUS. */
  ifName: string;
  /** CNI_ARGS as given (duplicates: the last one wins). */
  args: Record<string, string>;
  /** CNI_PATH split on ':' (empty entries dropped). */
  path: string[];
}

/** CNI_ARGS keys azure-vnet understands; any other key needs IgnoreUnknown=1 (as libcni's LoadArgs). */
const KNOWN_ARGS = new Set(['IgnoreUnknown', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID']);

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ARG_KEY = /^[A-Za-z0-9_.-]+$/;
const MAX_IFNAME_BYTES = 15; // IFNAMSIZ - 1

/** Quote a value for an error message: escaped and cut short, so a hostile value cannot spoil the message. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
}

export function parseCommand(env: NodeJS.ProcessEnv): CniCommand {
  const command = env.CNI_COMMAND;
  if (command === undefined || command === '') {
    throw new InvalidEnvError(`CNI_COMMAND is not set; want one of ${CNI_COMMANDS.join(', ')}`);
  }
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new InvalidEnvError(`CNI_COMMAND ${quote(command)} is unknown; want one of ${CNI_COMMANDS.join(', ')}`);
  }
  return command as CniCommand;
}

export function validateContainerId(id: string): void {
  if (!CONTAINER_ID.test(id)) {
    throw new InvalidEnvError(
      `CNI_CONTAINERID ${quote(id)} is invalid: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'`,
    );
  }
}

/** The kernel's and libcni's rules for an interface name. */
export function validateIfName(name: string): void {
  const problem =
    name === ''
      ? 'it is empty'
      : Buffer.byteLength(name) > MAX_IFNAME_BYTES
        ? `it is longer than ${MAX_IFNAME_BYTES} bytes`
        : name === '.' || name === '..'
          ? "'.' and '..' are not allowed"
          : /[/:\s]/u.test(name)
            ? "it must not contain '/', ':' or whitespace"
            : undefined;
  if (problem !== undefined) throw new InvalidEnvError(`CNI_IFNAME ${quote(name)} is invalid: ${problem}`);
}

/** `K=V;K=V` with libcni's IgnoreUnknown rule. An empty segment (a trailing ';') is tolerated. */
export function parseCniArgs(raw: string): Record<string, string> {
  const args: Record<string, string> = {};
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidEnvError(`CNI_ARGS entry ${quote(pair)} is not KEY=VALUE (entries are separated by ';')`);
    const key = pair.slice(0, eq);
    if (!ARG_KEY.test(key)) throw new InvalidEnvError(`CNI_ARGS key ${quote(key)} is invalid: use letters, digits, '_', '.' and '-'`);
    args[key] = pair.slice(eq + 1);
  }
  const ignore = args.IgnoreUnknown;
  if (ignore !== undefined && !['1', '0', 'true', 'false', 'True', 'False'].includes(ignore)) {
    throw new InvalidEnvError(`CNI_ARGS IgnoreUnknown=${quote(ignore)} is invalid: want 1, 0, true or false`);
  }
  if (ignore !== '1' && ignore !== 'true' && ignore !== 'True') {
    const unknown = Object.keys(args).filter((k) => !KNOWN_ARGS.has(k));
    if (unknown.length > 0) {
      throw new InvalidEnvError(
        `CNI_ARGS has unknown keys ${unknown.map(quote).join(', ')}; add IgnoreUnknown=1 to pass keys azure-vnet does not use`,
      );
    }
  }
  return args;
}

function validateNetns(netns: string, command: CniCommand): void {
  if (!path.isAbsolute(netns)) {
    throw new InvalidEnvError(`CNI_NETNS ${quote(netns)} is invalid: it must be an absolute path such as /var/run/netns/<name>`);
  }
  if (command === 'ADD' && !fs.existsSync(netns)) {
    throw new InvalidEnvError(`CNI_NETNS ${quote(netns)} does not exist: the runtime must create the network namespace before ADD`);
  }
}

/** Validate the variables `command` needs (spec 1.1.0 "Parameters"); variables a verb does not use are ignored. */
export function parseEnv(command: CniCommand, env: NodeJS.ProcessEnv): CniEnv {
  const value = (name: string): string => env[name] ?? '';
  const result: CniEnv = {
    command,
    containerId: '',
    netns: '',
    ifName: '',
    args: {},
    path: value('CNI_PATH').split(':').filter((p) => p !== ''),
  };
  if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK') return result;

  const missing = ['CNI_CONTAINERID', 'CNI_IFNAME', ...(command === 'DEL' ? [] : ['CNI_NETNS'])].filter((n) => value(n) === '');
  if (missing.length > 0) throw new InvalidEnvError(`${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} required for ${command}`);

  result.containerId = value('CNI_CONTAINERID');
  validateContainerId(result.containerId);
  result.ifName = value('CNI_IFNAME');
  validateIfName(result.ifName);
  result.netns = value('CNI_NETNS');
  // DEL must succeed whatever became of the namespace: only its shape is checked.
  if (result.netns !== '') validateNetns(result.netns, command);
  result.args = parseCniArgs(value('CNI_ARGS'));
  return result;
}
