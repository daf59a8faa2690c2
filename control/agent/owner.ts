// Which process is working on an endpoint that is not "ready" yet. An ADD or
// DEL records its process (pid and start time, so a reused pid does not pass
// for it); the daemon's reconcile on start leaves endpoints alone whose
// process is still running (a standalone CNI call made while the daemon was
// down) and finishes only those whose process is gone.
import { readFileSync } from 'node:fs';

export interface EndpointOwner {
  pid: number;
  /** start time in clock ticks after boot (/proc/<pid>/stat field 22) */
  startTicks: number;
}

function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

export function currentOwner(): EndpointOwner | undefined {
  const ticks = startTicks(process.pid);
  return ticks === undefined ? undefined : { pid: process.pid, startTicks: ticks };
}

/**
 * True only if that very process still runs (in our pid namespace). A daemon
 * in another pid namespace than the CNI calls cannot tell: it sees the owner
 * as gone, which is the behaviour without owners.
 */
export function ownerRunning(owner: EndpointOwner | undefined): boolean {
  if (!owner || owner.pid === process.pid) return false;
  return startTicks(owner.pid) === owner.startTicks;
}
