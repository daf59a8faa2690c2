// A real container runtime on the simulated VNet: podman (runc, CNI network
// backend) in lab VMs, with a conflist of type azure-vnet, and the same
// through docker/docker-run.sh with DOCKER=podman. The image is a busybox-static
// rootfs built here (no registry is reachable).
//
// podman runs with `nsenter --net` only (not lab/vm-exec): it bind-mounts its
// own netns files under /run/netns, and those mounts must be visible to its
// later calls. The conflist therefore names the VM's state, log and bpffs
// paths explicitly, as a host with a non-default layout would.
import t from 'tap';
import { mkdirSync, writeFileSync, copyFileSync, chmodSync, symlinkSync, rmSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startWhoami, type ToolServer } from '../../lab/tools/net.js';
import { run, runOk } from '../../control/exec.js';
import { MODES, REPO, CNI_PATH, VmCni, azureConflist } from './helpers/cni-harness.js';

const IMAGE = 'localhost/vnetlab/busybox';
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

async function buildImageDir(dir: string): Promise<string> {
  const rootfs = path.join(dir, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  mkdirSync(path.join(rootfs, 'tmp'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'nc', 'sleep', 'ip', 'cat', 'echo', 'hostname']) symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  const tar = path.join(dir, 'rootfs.tar');
  await runOk(['tar', '-C', rootfs, '-cf', tar, '.']);
  return tar;
}

for (const mode of MODES) {
  t.test(`podman containers on the VNet in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 8));
    t.teardown(() => lab.down());
    const dir = path.join(lab.names.stateDir, 'podman');
    mkdirSync(dir, { recursive: true });
    const tar = await buildImageDir(dir);
    // One containers.conf per VM: each VM reads conflists from its own /etc/cni/net.d.
    for (const vm of ['vm1', 'vm2']) {
      writeFileSync(
        path.join(dir, `containers-${vm}.conf`),
        `[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${REPO}/bin", "/usr/lib/cni"]\nnetwork_config_dir = "${lab.vmPaths(vm).cniConf}"\n` +
          `[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n`,
      );
    }
    writeFileSync(path.join(dir, 'storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = "${dir}/storage"\nrunroot = "${dir}/run"\n`);
    const envFor = (vm: string) => ({ CONTAINERS_CONF: path.join(dir, `containers-${vm}.conf`), CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf') });
    const inVm = (vm: string, argv: string[], extraEnv: Record<string, string> = {}) =>
      run(['nsenter', `--net=${lab.vmInfo(vm).netnsPath}`, '--', 'env', 'VNET_CNI_LAB=1', ...Object.entries({ ...envFor(vm), ...extraEnv }).map(([k, v]) => `${k}=${v}`), ...argv], { timeoutMs: 120_000 });
    const podman = (vm: string, args: string[]) => inVm(vm, ['podman', '--runtime', 'runc', ...args]);
    const conflistFor = (vm: string) => {
      const p = lab.vmPaths(vm);
      return azureConflist({ cniVersion: '1.0.0', dataplane: mode, extra: { stateDir: p.varLib, logFile: path.join(p.log, 'azure-vnet.log'), bpfRoot: path.join(p.bpffs, 'vnet-cni') } });
    };
    const netnsBefore = new Set(readdirSync('/run/netns'));
    t.teardown(async () => {
      for (const vm of ['vm1', 'vm2']) await podman(vm, ['rm', '-f', '-a', '-t', '0']);
      // podman names its netns files netns-<uuid>; remove any this test's containers left.
      for (const name of readdirSync('/run/netns')) if (name.startsWith('netns-') && !netnsBefore.has(name)) await run(['ip', 'netns', 'del', name]);
      rmSync(dir, { recursive: true, force: true });
    });
    for (const vm of ['vm1', 'vm2']) new VmCni(lab, vm, conflistFor(vm));
    const internet: ToolServer = await startWhoami(lab.internetNs, 8080, { name: 'internet' });
    t.teardown(() => internet.stop());

    const imported = await podman('vm1', ['import', tar, IMAGE]);
    t.equal(imported.code, 0, `image imported ${imported.stderr.slice(-300)}`);

    const ipOf = async (vm: string, name: string): Promise<string> => {
      const res = await podman(vm, ['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
      return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(res.stdout)?.[1] ?? `none: ${res.stderr}`;
    };
    // busybox's static wget crashes in this image; a tiny nc server/client is enough.
    const serve = (text: string) => ['nc', '-ll', '-p', '8080', '-e', 'echo', text];

    const web1 = await podman('vm1', ['run', '-d', '--name', 'web1', '--network', 'azure', ...ULIMITS, IMAGE, ...serve('web1')]);
    t.equal(web1.code, 0, `web1 runs on vm1 ${web1.stderr.slice(-500)}`);
    const web2 = await podman('vm2', ['run', '-d', '--name', 'web2', '--network', 'azure', ...ULIMITS, IMAGE, ...serve('web2')]);
    t.equal(web2.code, 0, `web2 runs on vm2 ${web2.stderr.slice(-500)}`);
    const ip1 = await ipOf('vm1', 'web1');
    const ip2 = await ipOf('vm2', 'web2');
    t.ok(lab.vmInfo('vm1').secondaryIps.includes(ip1), `web1 has a vm1 secondary IP (${ip1})`);
    t.ok(lab.vmInfo('vm2').secondaryIps.includes(ip2), `web2 has a vm2 secondary IP (${ip2})`);

    const fetch = (vm: string, from: string, ip: string) => podman(vm, ['exec', from, 'nc', '-w', '3', ip, '8080']);
    const f12 = await fetch('vm1', 'web1', ip2);
    t.equal(f12.stdout.trim(), 'web2', `web1 -> web2 across VMs ${f12.stderr}`);
    t.equal((await fetch('vm2', 'web2', ip1)).stdout.trim(), 'web1', 'web2 -> web1');
    const net = await podman('vm1', ['exec', 'web1', 'sh', '-c', 'echo | nc -w 3 203.0.113.10 8080']);
    t.match(net.stdout, new RegExp(`^${lab.vmInfo('vm1').publicIp!.replaceAll('.', '\\.')} `), 'web1 reaches the internet host as the VM public IP');

    t.test('docker-run.sh with DOCKER=podman', async (t) => {
      const script = path.join(REPO, 'docker', 'docker-run.sh');
      const runEnv = { DOCKER: 'podman', CNI_PATH, DOCKER_RUN_STATE: path.join(dir, 'docker-run'), CNI_CONF: path.join(lab.vmPaths('vm1').cniConf, '10-azure.conflist'), DOCKER_RUN_ARGS: `--runtime runc ${ULIMITS.join(' ')}` };
      const res = await inVm('vm1', [script, 'web3', 'default', IMAGE, ...serve('web3')], runEnv);
      t.equal(res.code, 0, `docker-run.sh succeeded ${res.stderr.slice(-500)}`);
      const ip3 = res.stdout.trim();
      t.ok(lab.vmInfo('vm1').secondaryIps.includes(ip3), `web3 got a secondary IP (${ip3})`);
      t.equal((await fetch('vm2', 'web2', ip3)).stdout.trim(), 'web3', 'web2 (vm2) -> web3');
      const state = new VmCni(lab, 'vm1', conflistFor('vm1')).state();
      t.ok(Object.values(state.endpoints).some((e) => e.ip === ip3 && e.podName === 'web3'), 'the pod name from CNI_ARGS is recorded');
      const rm = await inVm('vm1', [script, '--rm', 'web3', 'default'], runEnv);
      t.equal(rm.code, 0, `docker-run.sh --rm ${rm.stderr.slice(-300)}`);
      const after = new VmCni(lab, 'vm1', conflistFor('vm1')).state();
      t.notOk(Object.values(after.endpoints).some((e) => e.ip === ip3), 'its endpoint is gone');
    });
  });
}
