// Every name and path a lab owns derives from its prefix, and the prefix
// (or, for custom prefixes, owner.json in the state dir) names the owner
// process, so a later run can tell a crashed lab from a live one.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { LabSpecError } from './errors.js';

export const STATE_ROOT = '/run/vnet-cni-lab';
export const BPFFS_ROOT = '/sys/fs/bpf';
export const NETNS_DIR = '/run/netns';

const PREFIX = /^[a-z][a-z0-9]{1,15}$/;
/** Default prefixes: vl<owner pid>, or vl<owner pid>x<n> for a process's later labs. */
const PID_PREFIX = /^vl(\d+)(?:x[0-9a-z]+)?$/;
const POD_NAME = /^[a-z0-9][a-z0-9-]{0,30}$/;

let labsMadeByThisProcess = 0;

/** A fresh prefix for a lab owned by this process. */
export function newPrefix(): string {
  labsMadeByThisProcess += 1;
  return labsMadeByThisProcess === 1 ? `vl${process.pid}` : `vl${process.pid}x${labsMadeByThisProcess}`;
}

export function checkPrefix(prefix: string): string {
  if (!PREFIX.test(prefix)) throw new LabSpecError(`lab prefix '${prefix}' must match ${PREFIX} (no dashes: names are <prefix>-<vm>)`);
  return prefix;
}

export function checkPodName(pod: string): string {
  if (!POD_NAME.test(pod)) throw new LabSpecError(`pod name '${pod}' must match ${POD_NAME}`);
  return pod;
}

/** The owner pid a default prefix encodes, if it is one. */
export function pidOfPrefix(prefix: string): number | undefined {
  const m = PID_PREFIX.exec(prefix);
  return m ? Number(m[1]) : undefined;
}

/** The lab prefix a netns / bpffs dir name like `vl123-vm1` belongs to (the part before the first dash). */
export function prefixOfName(name: string): string | undefined {
  const dash = name.indexOf('-');
  if (dash <= 0) return undefined;
  const prefix = name.slice(0, dash);
  return PREFIX.test(prefix) ? prefix : undefined;
}

export class LabNames {
  constructor(readonly prefix: string) {
    checkPrefix(prefix);
  }
  get stateDir(): string {
    return path.join(STATE_ROOT, this.prefix);
  }
  get specFile(): string {
    return path.join(this.stateDir, 'vnet.json');
  }
  get ownerFile(): string {
    return path.join(this.stateDir, 'owner.json');
  }
  /** Unix socket of the wireserver's admin API (fault knob, LB status). */
  get wireAdminSocket(): string {
    return path.join(this.stateDir, 'wire.sock');
  }
  get fabric(): string {
    return `${this.prefix}-fabric`;
  }
  get inet(): string {
    return `${this.prefix}-inet`;
  }
  get onprem(): string {
    return `${this.prefix}-onprem`;
  }
  get wire(): string {
    return `${this.prefix}-wire`;
  }
  vm(vm: string): string {
    return `${this.prefix}-${vm}`;
  }
  pod(vm: string, pod: string): string {
    return `${this.prefix}-${vm}-${checkPodName(pod)}`;
  }
  /** The fabric-side interface of a VM's NIC. */
  nic(vm: string): string {
    return `to-${vm}`;
  }
  vmDir(vm: string): string {
    return path.join(this.stateDir, 'vms', vm);
  }
  bpfDir(vm: string): string {
    return path.join(BPFFS_ROOT, `${this.prefix}-${vm}`);
  }
  /** True for netns / bpffs names that belong to this lab. */
  owns(name: string): boolean {
    return name.startsWith(`${this.prefix}-`);
  }
}

export function netnsPath(name: string): string {
  return path.join(NETNS_DIR, name);
}

export interface OwnerRecord {
  pid: number;
  /** /proc/<pid>/stat starttime, so a recycled pid is not mistaken for the owner */
  startTime: string;
  /** 'keeper': a `vnetctl lab up` keeper process that may be asked to stop; 'process': a test or script */
  kind: 'process' | 'keeper';
  createdAt: string;
}

/** Field 22 (starttime) of /proc/<pid>/stat, or undefined if the process is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function ownerRecord(kind: OwnerRecord['kind']): OwnerRecord {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? '', kind, createdAt: new Date().toISOString() };
}

export function ownerAlive(owner: Pick<OwnerRecord, 'pid' | 'startTime'>): boolean {
  const start = processStartTime(owner.pid);
  return start !== undefined && (owner.startTime === '' || start === owner.startTime);
}

export function readOwner(names: LabNames): OwnerRecord | undefined {
  try {
    const parsed = JSON.parse(readFileSync(names.ownerFile, 'utf8')) as OwnerRecord;
    return typeof parsed.pid === 'number' ? parsed : undefined;
  } catch {
    return undefined;
  }
}
