// Running commands "inside a VM" (lab/vm-exec): the VM's netns and sysfs,
// a persistent per-VM bpffs, per-VM plugin directories, VNET_CNI_LAB=1, the
// usual tools, and a refusal to run in the machine's own netns.
import t from 'tap';
import path from 'node:path';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { run } from '../../control/exec.js';
import { labForTest } from '../../lab/testing.js';
import { defaultSpec } from '../../lab/spec.js';
import { vmExecScript } from '../../lab/vm-exec.js';

t.test('vm-exec', async (t) => {
  const lab = await labForTest(t, defaultSpec(2, 1));

  await t.test("sees the VM's interfaces, sysfs and marker", async (t) => {
    const r = await lab.execVm('vm1', ['sh', '-c', 'ls /sys/class/net; echo "lab=$VNET_CNI_LAB"; cat /sys/class/net/eth0/address; stat -f -c %T /sys/fs/bpf /sys/fs/cgroup']);
    t.equal(r.code, 0, r.stderr);
    const hostCgroup = (await run(['stat', '-f', '-c', '%T', '/sys/fs/cgroup'])).stdout;
    t.equal(r.stdout, `eth0\nlo\nlab=1\n${lab.vmInfo('vm1').mac}\nbpf_fs\n${hostCgroup}`, "the machine's cgroup mount stays visible");
  });

  await t.test('pins persist across commands, per VM, on the machine bpffs', async (t) => {
    const made = await lab.execVm('vm1', ['bpftool', 'map', 'create', '/sys/fs/bpf/m1', 'type', 'array', 'key', '4', 'value', '4', 'entries', '1', 'name', 'm1']);
    t.equal(made.code, 0, made.stderr);
    const again = await lab.execVm('vm1', ['bpftool', '-j', 'map', 'show', 'pinned', '/sys/fs/bpf/m1']);
    t.equal(again.code, 0, 'a later command sees the pin');
    t.match(JSON.parse(again.stdout), { name: 'm1', type: 'array' });
    t.ok(existsSync(path.join(lab.vmPaths('vm1').bpffs, 'm1')), 'at the host path vmPaths().bpffs');
    t.equal((await lab.execVm('vm2', ['ls', '-A', '/sys/fs/bpf'])).stdout, '', 'vm2 has its own, empty bpffs');
  });

  await t.test('per-VM state, run, log and CNI config directories', async (t) => {
    const w = await lab.execVm('vm1', ['sh', '-c', 'echo s > /var/lib/vnet-cni/state && echo r > /run/vnet-cni/sock && echo l > /var/log/azure-vnet.log && echo "{}" > /etc/cni/net.d/10-azure.conflist']);
    t.equal(w.code, 0, w.stderr);
    const paths = lab.vmPaths('vm1');
    t.equal(readFileSync(path.join(paths.varLib, 'state'), 'utf8'), 's\n');
    t.equal(readFileSync(path.join(paths.run, 'sock'), 'utf8'), 'r\n');
    t.equal(readFileSync(path.join(paths.log, 'azure-vnet.log'), 'utf8'), 'l\n');
    t.equal(readFileSync(path.join(paths.cniConf, '10-azure.conflist'), 'utf8'), '{}\n');
    const other = await lab.execVm('vm2', ['sh', '-c', 'ls -A /var/lib/vnet-cni /run/vnet-cni /var/log /etc/cni/net.d']);
    t.notMatch(other.stdout, /state|sock|azure-vnet|conflist/, 'vm2 sees none of it');
    t.notOk(existsSync('/var/lib/vnet-cni/state'), "the machine's directory is untouched");
  });

  await t.test('ip, iptables, tc, bpftool and node work inside', async (t) => {
    const ipt = await lab.execVm('vm1', ['iptables', '-w', '-t', 'nat', '-S', 'POSTROUTING']);
    t.equal(ipt.code, 0, ipt.stderr);
    const tc = await lab.execVm('vm1', ['tc', 'qdisc', 'show', 'dev', 'eth0']);
    t.equal(tc.code, 0, tc.stderr);
    const node = await lab.execVm('vm1', [process.execPath, '-e', "console.log(require('fs').statSync('/proc/self/ns/net').ino)"]);
    t.equal(Number(node.stdout), statSync(lab.vmInfo('vm1').netnsPath).ino, "node runs in the VM's netns");
    const env = await lab.execVm('vm1', ['sh', '-c', 'echo $EXTRA'], { env: { EXTRA: 'x1' } });
    t.equal(env.stdout, 'x1\n', 'env is passed');
    const input = await lab.execVm('vm1', ['cat'], { input: 'stdin-data' });
    t.equal(input.stdout, 'stdin-data');
    t.equal((await lab.execVm('vm1', ['sh', '-c', 'exit 7'])).code, 7, 'the exit code is the command\'s');
  });

  await t.test("refuses the machine's own netns", async (t) => {
    // A /run/netns name bound to this process's netns (the root one): only a file, nothing in the netns changes.
    const name = `vmx${process.pid}root`;
    t.equal((await run(['ip', 'netns', 'attach', name, String(process.pid)])).code, 0);
    t.teardown(() => run(['ip', 'netns', 'del', name]));
    const paths = lab.vmPaths('vm1');
    const r = await run([vmExecScript(), name, paths.root, paths.bpffs, 'true']);
    t.not(r.code, 0);
    t.match(r.stderr, /refusing to run/);
  });
});
