// Endpoint owners: reconcile leaves an endpoint alone only while the very
// process that started creating or deleting it still runs. No child process:
// the parent (the test runner) is a live process, and a pid above the
// kernel's pid_max is one that cannot exist.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { currentOwner, ownerRunning } from '../../control/agent/owner.js';

function startTicksOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

t.test('an owner is running only while that process (same pid, same start) lives', async (t) => {
  const me = currentOwner();
  t.ok(me && me.pid === process.pid && me.startTicks > 0, 'this process as an owner');
  t.equal(ownerRunning(me), false, 'our own records are never "someone else at work" (the daemon reconciles what it left)');
  t.equal(ownerRunning(undefined), false, 'no owner recorded: finished by reconcile as before');

  const parent = process.ppid;
  const ticks = startTicksOf(parent);
  t.equal(ownerRunning({ pid: parent, startTicks: ticks }), true, 'a live process with its start time');
  t.equal(ownerRunning({ pid: parent, startTicks: ticks + 1 }), false, 'the same pid with another start time is a reused pid');
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  t.equal(ownerRunning({ pid: pidMax + 1, startTicks: ticks }), false, 'a process that does not exist');
});
