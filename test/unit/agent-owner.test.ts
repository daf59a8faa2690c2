// Endpoint owners: reconcile leaves an endpoint alone only while the very
// process that started creating or deleting it still runs.
import t from 'tap';
import { spawn } from 'node:child_process';
import { currentOwner, ownerRunning } from '../../control/agent/owner.js';

t.test('an owner is running only while that process (same pid, same start) lives', async (t) => {
  const me = currentOwner();
  t.ok(me && me.pid === process.pid && me.startTicks > 0, 'this process as an owner');
  t.equal(ownerRunning(me), false, 'our own records are never "someone else at work" (the daemon reconciles what it left)');
  t.equal(ownerRunning(undefined), false, 'no owner recorded: finished by reconcile as before');

  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  const { readFileSync } = await import('node:fs');
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  t.equal(ownerRunning({ pid: child.pid!, startTicks: ticks }), true, 'a live process with its start time');
  t.equal(ownerRunning({ pid: child.pid!, startTicks: ticks + 1 }), false, 'the same pid with another start time is a reused pid');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  // After the parent reaps it, the pid no longer exists.
  await new Promise((r) => setTimeout(r, 50));
  t.equal(ownerRunning({ pid: child.pid!, startTicks: ticks }), false, 'a dead process');
});
