// Does this kernel (and this build) have what the ebpf dataplane needs? Each
// check is cheap and changes nothing: it reads the filesystem and loads two
// tiny programs that are never attached.
import fs from 'node:fs';
import path from 'node:path';
import { DataplaneUnavailableError } from '../../errors.js';
import { isNativeError, native, repoRoot } from '../../../native/index.js';

const BPFFS_MAGIC = 0xcafe4a11;

export interface ProbeOptions {
  /** Where pins will live (its nearest existing ancestor must be on a bpffs). Default /sys/fs/bpf. */
  bpffs?: string;
  /** Directory of the built objects. Default <repo>/bpf. */
  objectDir?: string;
}

export interface ProbeReport {
  libbpf: string;
  missing: string[];
}

/** Returns what was checked; throws DataplaneUnavailableError naming every missing piece. */
export async function probeKernel(options: ProbeOptions = {}): Promise<ProbeReport> {
  const missing: string[] = [];
  const bpffs = options.bpffs ?? '/sys/fs/bpf';
  const objectDir = options.objectDir ?? path.join(repoRoot(), 'bpf');

  if (!onBpffs(bpffs)) missing.push(`bpffs at ${bpffs} (mount -t bpf bpf /sys/fs/bpf)`);
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) missing.push('kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)');
  if (!kernelHasSymbol('clsact_init')) missing.push('tc clsact qdisc (CONFIG_NET_SCH_INGRESS)');
  let libbpf = 'unknown';
  try {
    libbpf = native().libbpfVersion();
  } catch (err) {
    missing.push(`native addon (npm run build:native): ${(err as Error).message}`);
    throw new DataplaneUnavailableError(`ebpf dataplane unavailable: ${missing.join('; ')}`);
  }
  const objects: Array<[string, string]> = [
    ['vnet.bpf.o', 'the dataplane object (npm run build:bpf)'],
    ['probe_fwd.bpf.o', 'bpf_redirect_peer / bpf_redirect_neigh / bpf_fib_lookup for tc (Linux >= 5.10)'],
    ['probe_ct.bpf.o', 'conntrack kfuncs bpf_skb_ct_lookup / bpf_ct_release for tc (Linux >= 6.0, CONFIG_NF_CONNTRACK)'],
  ];
  for (const [file, what] of objects) {
    const p = path.join(objectDir, file);
    if (!fs.existsSync(p)) {
      missing.push(`${p} (npm run build:bpf)`);
      continue;
    }
    if (file === 'vnet.bpf.o') continue; // loading it needs map pins: EbpfPrograms.open does that
    try {
      const obj = await native().loadObject(p);
      obj.close();
    } catch (err) {
      const log = isNativeError(err) ? (err.verifierLog ?? err.libbpfLog ?? '') : '';
      const hint = /unknown func|invalid func|failed to find BTF for extern|program of this type cannot use helper/.exec(log)?.[0];
      missing.push(`${what}${hint ? ` [${hint}]` : ''}: ${(err as Error).message}`);
    }
  }
  if (missing.length > 0) throw new DataplaneUnavailableError(`ebpf dataplane unavailable: ${missing.join('; ')}`);
  return { libbpf, missing };
}

/** Is `dir` (or its nearest existing ancestor) on a bpffs? */
export function onBpffs(dir: string): boolean {
  let d = path.resolve(dir);
  for (let i = 0; i < 64; i++) {
    if (fs.existsSync(d)) {
      try {
        return fs.statfsSync(d).type === BPFFS_MAGIC;
      } catch {
        return false;
      }
    }
    const parent = path.dirname(d);
    if (parent === d) return false;
    d = parent;
  }
  return false;
}

function kernelHasSymbol(name: string): boolean {
  try {
    const text = fs.readFileSync('/proc/kallsyms', 'utf8');
    return new RegExp(`\\s${name}(\\s|$)`, 'm').test(text);
  } catch {
    return true; // no kallsyms (hardened kernel): let the attach itself fail later
  }
}
