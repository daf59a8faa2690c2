// Reclaiming endpoints whose pod died without a DEL (a container killed
// outside its runtime's cleanup: `docker rm -f`, an OOM kill of the engine, a
// reboot of the engine alone). The agent runs it when an ADD finds the pool
// empty, and the daemon on a timer.
//
// The one rule: never release the IP of a live pod. A path cannot prove a
// netns is dead or alive: /proc/PID/ns/net comes back with a reused PID, and a
// /var/run/netns/NAME bind mount can be re-mounted over a new netns. So an
// endpoint is reclaimed only on two independent pieces of evidence:
//   1. the path no longer names the netns it named at ADD (device + inode of
//      the nsfs file recorded then), or no longer exists; and
//   2. the host end of the pod's veth is gone. A veth pair dies with either
//      end's namespace, so a present host veth means the pod's netns is alive
//      somewhere (held by another process or mount), whatever the path says.
// Equal identities always mean "alive": nsfs inode numbers are reused once a
// namespace is freed, so an equal inode may be a new netns, and then the
// endpoint is kept (a leak is recoverable, a stolen IP is not).
import { statSync } from 'node:fs';
import type { EndpointRecord } from '../store/node-store.js';

/** What a netns path names now. */
export type NetnsSeen = { kind: 'absent' } | { kind: 'id'; id: string } | { kind: 'unknown'; error: string };

export type Verdict = { reclaim: boolean; reason: string };

/** The identity of a netns file: `dev:ino` of what the path resolves to (nsfs). */
export function netnsIdOf(st: { dev: bigint | number; ino: bigint | number }): string {
  return `${String(st.dev)}:${String(st.ino)}`;
}

/** Stat a netns path: its identity, 'absent' (ENOENT/ENOTDIR/ESRCH), or 'unknown' for anything else (EACCES...). */
export function seeNetns(path: string, stat: (p: string) => { dev: bigint; ino: bigint } = (p) => statSync(p, { bigint: true })): NetnsSeen {
  try {
    return { kind: 'id', id: netnsIdOf(stat(path)) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ESRCH') return { kind: 'absent' };
    return { kind: 'unknown', error: code ?? (err as Error).message };
  }
}

/**
 * May this endpoint's IP be released? `seen` is what its netns path names now,
 * `hostVethPresent` whether the host end of its veth still exists. Pure, so
 * every case is unit-tested with fake observations.
 */
export function judge(rec: Pick<EndpointRecord, 'phase' | 'netns' | 'netnsId'>, seen: NetnsSeen, hostVethPresent: boolean): Verdict {
  if (rec.phase !== 'ready') return { reclaim: false, reason: `phase ${rec.phase}: the call in progress, a DEL or reconcile settles it` };
  if (rec.netns === '') return { reclaim: false, reason: 'no netns path recorded' };
  if (seen.kind === 'unknown') return { reclaim: false, reason: `cannot stat ${rec.netns} (${seen.error})` };
  if (seen.kind === 'id') {
    if (rec.netnsId === undefined) return { reclaim: false, reason: `${rec.netns} exists and no identity was recorded at ADD` };
    if (seen.id === rec.netnsId) return { reclaim: false, reason: `${rec.netns} still names the netns of the ADD (${rec.netnsId})` };
  }
  if (hostVethPresent) return { reclaim: false, reason: 'the host veth exists, so the pod end and its netns are alive' };
  return {
    reclaim: true,
    reason: seen.kind === 'absent' ? `${rec.netns} is gone and so is the veth` : `${rec.netns} now names another netns (${seen.id}, was ${rec.netnsId}) and the veth is gone`,
  };
}
