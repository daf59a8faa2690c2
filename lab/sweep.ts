// Finds the leftovers of labs whose owner died (kill -9, a crashed test) and
// removes them. A lab whose owner is alive is never touched: several test
// files and engineers run labs at the same time.
import { readdirSync } from 'node:fs';
import { BPFFS_ROOT, LabNames, NETNS_DIR, STATE_ROOT, ownerAlive, pidOfPrefix, prefixOfName, readOwner } from './naming.js';
import { pidAlive } from './children.js';
import { teardownPrefix } from './teardown.js';

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Alive, dead, or not a lab at all (a name we must not touch). */
export function labLiveness(prefix: string): 'alive' | 'dead' | 'foreign' {
  let names: LabNames;
  try {
    names = new LabNames(prefix);
  } catch {
    return 'foreign';
  }
  const owner = readOwner(names);
  if (owner) return ownerAlive(owner) ? 'alive' : 'dead';
  const pid = pidOfPrefix(prefix);
  if (pid === undefined) return 'foreign';
  return pidAlive(pid) ? 'alive' : 'dead';
}

/** Every prefix that has something on this machine: state dirs, netns, bpffs dirs. */
export function labPrefixesPresent(): string[] {
  const prefixes = new Set<string>();
  for (const dir of listDir(STATE_ROOT)) if (!dir.startsWith('.')) prefixes.add(dir);
  for (const name of [...listDir(NETNS_DIR), ...listDir(BPFFS_ROOT)]) {
    const prefix = prefixOfName(name);
    if (prefix !== undefined && (pidOfPrefix(prefix) !== undefined || prefixes.has(prefix))) prefixes.add(prefix);
  }
  return [...prefixes].sort();
}

/** Remove every lab whose owner is dead; returns their prefixes. */
export async function sweepStaleLabs(): Promise<string[]> {
  const removed: string[] = [];
  for (const prefix of labPrefixesPresent()) {
    if (labLiveness(prefix) !== 'dead') continue;
    await teardownPrefix(new LabNames(prefix));
    removed.push(prefix);
  }
  return removed;
}
