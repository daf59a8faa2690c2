// `vnetctl lab up|status|exec|down` end to end, through bin/vnetctl.
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../control/exec.js';
import { LabNames, readOwner } from '../../lab/naming.js';
import { leftovers } from '../../lab/teardown.js';
import { pidAlive, pollUntil } from '../../lab/children.js';
import { labForTest } from '../../lab/testing.js';
import { defaultSpec } from '../../lab/spec.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const vnetctl = (...args: string[]) => run([process.execPath, path.join(root, 'bin', 'vnetctl'), 'lab', ...args], { timeoutMs: 120_000 });

t.test('vnetctl lab', async (t) => {
  const prefix = `vlc${process.pid}`;
  const names = new LabNames(prefix);
  t.teardown(async () => {
    if (leftovers(names).stateDir) await vnetctl('down', '--prefix', prefix);
  });

  const up = await vnetctl('up', '--vms', '2', '--pods', '3', '--prefix', prefix);
  t.equal(up.code, 0, up.stderr);
  t.match(up.stdout, /vm1\s+vlc\d+-vm1\s+00:0d:3a:f0:00:04\s+10\.240\.0\.4\s+198\.51\.100\.11\s+3: 10\.240\.1\.4-6/);
  t.match(up.stdout, /vm2\s+vlc\d+-vm2\s+00:0d:3a:f0:00:05\s+10\.240\.0\.5\s+198\.51\.100\.12\s+3: 10\.240\.2\.4-6/);
  const owner = readOwner(names)!;
  t.equal(owner.kind, 'keeper');
  t.not(owner.pid, process.pid, 'a detached keeper owns it');

  const status = await vnetctl('status', '--prefix', prefix);
  t.equal(status.code, 0);
  t.match(status.stdout, /\(alive\)/);

  const exec = await vnetctl('exec', '--prefix', prefix, 'vm2', '--', 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0');
  t.equal(exec.code, 0, exec.stderr);
  t.match(exec.stdout, /inet 10\.240\.0\.5\/16/);
  t.equal((await vnetctl('exec', '--prefix', prefix, 'vm1', '--', 'sh', '-c', 'exit 3')).code, 3, 'exit code passes through');
  t.equal((await vnetctl('exec', '--prefix', prefix, 'vm9', '--', 'true')).code, 1, 'unknown VM');

  const down = await vnetctl('down', '--prefix', prefix);
  t.equal(down.code, 0, down.stderr);
  t.same(leftovers(names), { netns: [], bpffs: [], stateDir: false });
  await pollUntil(() => (pidAlive(owner.pid) ? undefined : true), 60_000, 50, 'keeper exit');
  t.pass('the keeper exited');
});

t.test('vnetctl lab down refuses a lab owned by a test process', async (t) => {
  const lab = await labForTest(t, defaultSpec(1, 1));
  const down = await vnetctl('down', '--prefix', lab.prefix);
  t.equal(down.code, 1);
  t.match(down.stderr, /not a keeper/);
  t.ok(leftovers(lab.names).stateDir, 'the lab is still there');
});

t.test('vnetctl lab up rejects a bad spec before starting anything', async (t) => {
  const up = await vnetctl('up', '--vms', '0');
  t.equal(up.code, 1);
  t.match(up.stderr, /vms must be 1\.\.240/);
});
