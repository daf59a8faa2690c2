// Teardown leaves nothing behind: namespaces, links, bpffs pins, processes,
// state files; after SIGTERM of a lab's owner; and after kill -9 of it, once
// the sweeper ran. A live lab is never swept.
import t from 'tap';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from '../../control/exec.js';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { LabNames } from '../../lab/naming.js';
import { leftovers } from '../../lab/teardown.js';
import { labLiveness, sweepStaleLabs } from '../../lab/sweep.js';
import { pidAlive, pollUntil, startChild, stopChild, waitForLine } from '../../lab/children.js';

const keeperJs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lab/keeper.js');
const nothing = { netns: [], bpffs: [], stateDir: false };

async function rootLinks(): Promise<string[]> {
  const out = (await run(['ip', '-o', 'link', 'show'])).stdout;
  return out.split('\n').filter(Boolean).map((line) => line.split(':')[1]!.trim()).sort();
}

async function netnsPids(netns: string): Promise<number[]> {
  return (await run(['ip', 'netns', 'pids', netns])).stdout.split(/\s+/).filter(Boolean).map(Number);
}

async function makePin(lab: Lab, vm: string, name: string): Promise<void> {
  const made = await lab.execVm(vm, ['bpftool', 'map', 'create', `/sys/fs/bpf/${name}`, 'type', 'hash', 'key', '4', 'value', '4', 'entries', '4', 'name', name]);
  if (made.code !== 0) throw new Error(`bpftool map create: ${made.stderr}`);
}

/** Start a lab owned by another process (the keeper); resolves with its prefix and pid. */
async function keeperLab(t: { teardown(fn: () => unknown): void }): Promise<{ prefix: string; pid: number; stop: () => Promise<void> }> {
  const child = startChild([process.execPath, keeperJs, '--vms', '2', '--pods', '2', '--kind', 'process']);
  t.teardown(() => stopChild(child, 500));
  const ready = await waitForLine(child, /^READY (\S+)$/, 60_000, 'keeper');
  return { prefix: ready[1]!, pid: child.pid!, stop: () => stopChild(child, 10_000) };
}

t.test('down() removes every namespace, link, pin, process and file', async (t) => {
  const before = await rootLinks();
  const lab = await Lab.up(defaultSpec(2, 2));
  t.teardown(() => lab.down());
  const wirePids = await netnsPids(lab.wireserverNs);
  t.equal(wirePids.length, 1, 'the wireserver runs in its netns');
  await makePin(lab, 'vm1', 'pin1');
  t.ok(existsSync(path.join(lab.vmPaths('vm1').bpffs, 'pin1')), 'the pin is on the machine bpffs');
  await lab.addPodNetns('vm1', 'p1');
  const expected = ['fabric', 'inet', 'onprem', 'wire', 'vm1', 'vm2', 'vm1-p1'].map((n) => `${lab.prefix}-${n}`);
  t.same(leftovers(lab.names).netns.sort(), expected.sort(), 'fabric, hosts, VMs and the pod exist');

  await lab.down();
  await lab.down(); // idempotent
  t.same(leftovers(lab.names), nothing);
  t.same(await rootLinks(), before, 'the root netns links are unchanged');
  t.notOk(pidAlive(wirePids[0]!), 'the wireserver is gone');
});

t.test('SIGTERM to the owner tears its lab down', async (t) => {
  const keeper = await keeperLab(t);
  const names = new LabNames(keeper.prefix);
  t.equal(labLiveness(keeper.prefix), 'alive');
  t.ok(leftovers(names).netns.length > 0);
  await keeper.stop();
  t.same(leftovers(names), nothing);
});

t.test('after kill -9 of the owner, the sweeper removes everything of that lab', async (t) => {
  const keeper = await keeperLab(t);
  const names = new LabNames(keeper.prefix);
  const lab = Lab.open(keeper.prefix);
  await makePin(lab, 'vm2', 'pin2');
  await lab.addPodNetns('vm2', 'orphan');
  const wirePid = (await netnsPids(names.wire))[0]!;

  process.kill(keeper.pid, 'SIGKILL');
  await pollUntil(() => (pidAlive(keeper.pid) ? undefined : true), 60_000, 50, 'the keeper to die');
  t.equal(labLiveness(keeper.prefix), 'dead');
  t.ok(leftovers(names).netns.length > 0, 'kill -9 left the lab behind');

  const removed = await sweepStaleLabs();
  t.ok(removed.includes(keeper.prefix), 'the sweeper reports it');
  t.same(leftovers(names), nothing, 'no netns, pin or state dir of that prefix remains');
  await pollUntil(() => (pidAlive(wirePid) ? undefined : true), 60_000, 50, 'the wireserver to die');
  t.pass('the wireserver is gone');
});

t.test('the sweeper never removes a live lab', async (t) => {
  const lab = await Lab.up(defaultSpec(1, 1));
  t.teardown(() => lab.down());
  const removed = await sweepStaleLabs();
  t.notOk(removed.includes(lab.prefix));
  t.ok(leftovers(lab.names).netns.includes(lab.vmNetns('vm1')));
  t.equal(labLiveness(lab.prefix), 'alive');
});
