// `vnetctl lab ...`: bring a simulated VNet up (owned by a detached keeper
// process, or in the foreground), show it, run commands in its VMs, take it
// down. Loaded lazily by control/cli/vnetctl.ts.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Lab } from './lab.js';
import { LabNames, STATE_ROOT, checkPrefix, readOwner } from './naming.js';
import { labLiveness, labPrefixesPresent, sweepStaleLabs } from './sweep.js';
import { labNetns, teardownPrefix } from './teardown.js';
import { LAB_ARG_OPTIONS, labArgs, specFromArgs } from './keeper.js';
import { startChild, pidAlive, pollUntil, sleep } from './children.js';
import { compressIps, formatTable } from './table.js';
import { LabError } from './errors.js';
import { WIRESERVER_IP } from './spec.js';

const USAGE = `usage: vnetctl lab <command>

  up [--vms N] [--pods N] [--prefix P] [--spec FILE] [--foreground]
        bring up a simulated Azure VNet (default 2 VMs x 4 secondary IPs);
        a detached keeper process owns it until 'lab down' (or, with
        --foreground, this process owns it until Ctrl-C / SIGTERM)
  down [--prefix P]          tear a lab down
  status [--prefix P]        list labs, or show one lab's VMs, IPs and pod namespaces
  exec [--prefix P] <vm> -- <cmd> [args...]
                             run a command inside a VM (its netns, sysfs, bpffs, dirs)
  sweep                      remove labs whose owner process died

--prefix may be left out when exactly one lab is up.
`;

const KEEPER_READY_TIMEOUT_MS = 600_000;

export async function runLabCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'up':
        return await up(rest);
      case 'down':
        return await down(rest);
      case 'status':
        return status(rest);
      case 'exec':
        return await exec(rest);
      case 'sweep': {
        const removed = await sweepStaleLabs();
        out(removed.length ? `removed stale labs: ${removed.join(', ')}\n` : 'no stale labs\n');
        return 0;
      }
      case undefined:
      case 'help':
      case '-h':
      case '--help':
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`vnetctl lab: unknown command '${command}'\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    process.stderr.write(`vnetctl lab ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

function out(text: string): void {
  process.stdout.write(text);
}

async function up(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...LAB_ARG_OPTIONS, foreground: { type: 'boolean', default: false } } });
  const args = labArgs(values);
  const spec = specFromArgs(args); // fail on a bad spec before starting anything
  if (values.foreground) {
    const lab = await Lab.up(spec, { ...(args.prefix ? { prefix: args.prefix } : {}), log: (line) => process.stderr.write(`lab: ${line}\n`) });
    out(describeLab(lab) + `\nthis process owns lab ${lab.prefix}: Ctrl-C or SIGTERM tears it down\n`);
    await new Promise<never>(() => setInterval(() => {}, 1 << 30)); // the lab's signal handler exits
  }

  // Detached: a keeper process owns the lab; we wait for its READY line in its log.
  mkdirSync(STATE_ROOT, { recursive: true });
  const launchLog = path.join(STATE_ROOT, `.launch-${process.pid}-${Date.now()}.log`);
  const fd = openSync(launchLog, 'a');
  const keeperScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'keeper.js');
  const child = startChild([process.execPath, keeperScript, '--kind', 'keeper', ...argv.filter((a) => a !== '--foreground')], { detached: true, stdout: fd, stderr: fd });
  closeSync(fd);
  child.unref();
  const log = (): string => (existsSync(launchLog) ? readFileSync(launchLog, 'utf8') : '');
  try {
    const prefix = await pollUntil(
      () => {
        const ready = /^READY (\S+)$/m.exec(log());
        if (ready) return ready[1]!;
        if (child.exitCode !== null || child.signalCode !== null) throw new LabError(`the lab keeper exited:\n${log().trim()}`);
        return undefined;
      },
      KEEPER_READY_TIMEOUT_MS,
      100,
      'lab up',
    );
    renameSync(launchLog, path.join(new LabNames(prefix).stateDir, 'keeper.log'));
    out(describeLab(Lab.open(prefix)) + `\nkeeper pid ${child.pid} owns lab ${prefix}; 'vnetctl lab down${labPrefixesPresent().length > 1 ? ` --prefix ${prefix}` : ''}' tears it down\n`);
    return 0;
  } catch (err) {
    if (existsSync(launchLog)) unlinkSync(launchLog);
    throw err;
  }
}

/** The lab --prefix names, or the only one that is up (preferring keeper-owned labs). */
function pickLab(prefix: string | undefined): string {
  if (prefix !== undefined) return checkPrefix(prefix);
  const present = labPrefixesPresent().filter((p) => existsSync(new LabNames(p).specFile));
  const kept = present.filter((p) => readOwner(new LabNames(p))?.kind === 'keeper' && labLiveness(p) === 'alive');
  if (kept.length === 1) return kept[0]!;
  if (present.length === 1) return present[0]!;
  if (present.length === 0) throw new LabError('no lab is up (vnetctl lab up)');
  throw new LabError(`several labs are up (${present.join(', ')}): choose one with --prefix`);
}

async function down(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { prefix: { type: 'string' } } });
  const prefix = pickLab(values.prefix);
  const names = new LabNames(prefix);
  const owner = readOwner(names);
  if (labLiveness(prefix) === 'alive' && owner) {
    if (owner.kind !== 'keeper') throw new LabError(`lab ${prefix} is owned by pid ${owner.pid} (a test or foreground run), not a keeper; stop that process instead`);
    process.kill(owner.pid, 'SIGTERM');
    await pollUntil(() => (pidAlive(owner.pid) ? undefined : true), 60_000, 100, `keeper ${owner.pid} to exit`);
  }
  // Whatever the owner left (or a dead owner's whole lab).
  await sleep(0);
  await teardownPrefix(names);
  out(`lab ${prefix} is down\n`);
  return 0;
}

function status(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { prefix: { type: 'string' } } });
  const present = labPrefixesPresent();
  if (values.prefix === undefined && present.length !== 1) {
    if (present.length === 0) {
      out('no lab is up\n');
      return 0;
    }
    const rows = present.map((p) => {
      const names = new LabNames(p);
      const owner = readOwner(names);
      const spec = existsSync(names.specFile) ? Lab.open(p).spec : undefined;
      return [p, owner ? String(owner.pid) : '?', owner?.kind ?? '?', labLiveness(p), spec ? String(spec.vms.length) : '?', String(labNetns(names).length)];
    });
    out(formatTable(['prefix', 'owner', 'kind', 'state', 'VMs', 'netns'], rows));
    return 0;
  }
  const prefix = pickLab(values.prefix);
  out(`owner: ${JSON.stringify(readOwner(new LabNames(prefix)) ?? null)} (${labLiveness(prefix)})\n`);
  out(describeLab(Lab.open(prefix), true));
  return 0;
}

async function exec(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  if (dash < 0 || dash === argv.length - 1) throw new LabError(`usage: vnetctl lab exec [--prefix P] <vm> -- <cmd> [args...]`);
  const { values, positionals } = parseArgs({ args: argv.slice(0, dash), allowPositionals: true, options: { prefix: { type: 'string' } } });
  const [vm] = positionals;
  if (vm === undefined || positionals.length !== 1) throw new LabError('exec: name exactly one VM');
  const lab = Lab.open(pickLab(values.prefix));
  const result = await lab.execVm(vm, argv.slice(dash + 1), { timeoutMs: 0 });
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  return result.code;
}

export function describeLab(lab: Lab, withPods = false): string {
  const spec = lab.spec;
  const headers = ['VM', 'netns', 'NIC MAC', 'primary IP', 'public IP', 'secondary IPs (pod pool)', ...(withPods ? ['pod netns'] : [])];
  const rows = spec.vms.map((vm) => {
    const pods = withPods ? [lab.podNetns(vm.name).map((p) => path.basename(p).slice(lab.vmNetns(vm.name).length + 1)).join(' ') || '-'] : [];
    const pubs = Object.entries(vm.publicIps).map(([priv, pub]) => `${priv}->${pub}`);
    return [
      vm.name,
      lab.vmNetns(vm.name),
      vm.mac,
      vm.primaryIp,
      vm.publicIp ?? '-',
      `${vm.secondaryIps.length}: ${compressIps(vm.secondaryIps) || '-'}${pubs.length ? ` (public: ${pubs.join(', ')})` : ''}`,
      ...pods,
    ];
  });
  const lines = [
    `lab ${lab.prefix}: VNet ${spec.subnet} (gateway ${lab.gateway}), state ${lab.stateDir}`,
    formatTable(headers, rows).trimEnd(),
    `internet host ${lab.internetIp} (netns ${lab.internetNs}), on-prem ${lab.onpremIp} in ${lab.onpremPrefix} (netns ${lab.onpremNs}), wireserver ${WIRESERVER_IP} (netns ${lab.wireserverNs})`,
  ];
  if (spec.nsg.length) lines.push(`NSG rules: ${spec.nsg.length}`);
  for (const lb of spec.loadBalancers) lines.push(`load balancer ${lb.name}: ${lb.frontend}:${lb.port} -> ${lb.backends.join(', ')} :${lb.backendPort} (probe :${lb.probePort})`);
  lines.push(`run a command in a VM: vnetctl lab exec ${labPrefixesPresent().length > 1 ? `--prefix ${lab.prefix} ` : ''}${spec.vms[0]!.name} -- ip addr`);
  return lines.join('\n') + '\n';
}
