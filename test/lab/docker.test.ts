// The Docker engine on the VNet, set up as README / docs/operations.md say:
// docker/install-cni-plugin.sh installs the plugins and the shipped conflist,
// and docker/docker-run.sh starts containers with --network none and ADDs
// them. dockerd (Debian's docker.io) runs in lab VM vm1 (helpers/runtimes.ts).
// Containers get vm1 secondary IPs, reach each other, vm2, the internet (as
// vm1's public IP) and serve behind the lab's load balancer; a container
// removed with `docker rm -f` is still cleaned up by `docker-run.sh --rm`.
//
// One run, with the default install (docker/10-azure.conflist: iptables, no
// daemon), the set-up docs/operations.md gives for plain Docker: what is
// Docker-specific here (the engine, the scripts) does not depend on the
// dataplane, and containerd-cri.test runs real-runtime pods in both.
import t from 'tap';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { startWhoami, tcpWhoamiDetail } from '../../lab/tools/net.js';
import { run } from '../../control/exec.js';
import { REPO, VmCni, azureConflist } from './helpers/cni-harness.js';
import { Dockerd, IMAGE, busyboxRootfsTar, haveBinaries, DOCKER_CLI } from './helpers/runtimes.js';

const PORT = 8080;

{
  t.test('dockerd + docker-run.sh on the VNet, the default install', { skip: haveBinaries('dockerd', 'containerd', 'runc') }, async (t) => {
    const lab = await Lab.up(defaultSpec(2, 6));
    t.teardown(() => lab.down());
    const dir = path.join(lab.names.stateDir, 'docker-test');
    mkdirSync(dir, { recursive: true });

    // The install as documented, into the lab's directories instead of /opt and /etc.
    const binDir = path.join(dir, 'cni-bin');
    const conflist = path.join(REPO, 'docker', '10-azure.conflist');
    const install = await run(['bash', path.join(REPO, 'docker', 'install-cni-plugin.sh'), '--bin-dir', binDir, '--conf-dir', lab.vmPaths('vm1').cniConf, '--app-dir', path.join(dir, 'app')], { timeoutMs: 300_000 });
    t.equal(install.code, 0, `install-cni-plugin.sh ${install.stderr.slice(-500)}`);

    const docker = await Dockerd.start(lab, 'vm1');
    t.teardown(() => docker.stop());
    t.equal((await docker.docker(['import', await busyboxRootfsTar(dir), IMAGE])).code, 0, 'busybox image imported');

    const runEnv = { ...docker.env, DOCKER: DOCKER_CLI, CNI_PATH: `${binDir}:/usr/lib/cni` };
    const dockerRun = (args: string[]) => lab.execVm('vm1', [path.join(REPO, 'docker', 'docker-run.sh'), ...args], { env: runEnv, timeoutMs: 120_000 });
    // Each container answers "- - <name>" on PORT, the whoami shape tcpWhoamiDetail reads.
    const start = async (name: string): Promise<string> => {
      const res = await dockerRun([name, 'default', IMAGE, 'nc', '-ll', '-p', String(PORT), '-e', 'echo', '-', '-', name]);
      if (res.code !== 0) throw new Error(`docker-run.sh ${name}: ${res.stderr.trim()}`);
      return res.stdout.trim();
    };
    const ip1 = await start('web1');
    const ip2 = await start('web2');
    const pool = lab.vmInfo('vm1').secondaryIps;
    t.ok(pool.includes(ip1) && pool.includes(ip2) && ip1 !== ip2, `containers get vm1 secondary IPs (${ip1}, ${ip2})`);
    const cni = new VmCni(lab, 'vm1', azureConflist()); // only to read the state file (the conflist is the installed one)
    cni.setConflist(JSON.parse((await run(['cat', conflist])).stdout) as Record<string, unknown>);
    t.ok(Object.values(cni.state().endpoints).some((e) => e.ip === ip1 && e.podName === 'web1'), 'the container name is the pod name in the store');

    const exec = (name: string, sh: string) => docker.docker(['exec', name, 'sh', '-c', sh]);
    t.equal((await exec('web1', `nc -w 3 ${ip2} ${PORT}`)).stdout.trim(), `- - web2`, 'web1 -> web2 on the same VM');
    const vm2 = await startWhoami(lab.vmNetns('vm2'), PORT, { name: 'vm2' });
    t.teardown(() => vm2.stop());
    t.match((await exec('web1', `echo | nc -w 3 ${lab.vmInfo('vm2').primaryIp} ${PORT}`)).stdout, new RegExp(`^${ip1} `), 'web1 -> vm2, seen with its own VNet IP');
    const internet = await startWhoami(lab.internetNs, PORT, { name: 'internet' });
    t.teardown(() => internet.stop());
    t.match((await exec('web1', `echo | nc -w 3 ${lab.internetIp} ${PORT}`)).stdout, new RegExp(`^${lab.vmInfo('vm1').publicIp!.replaceAll('.', '\\.')} `), 'web1 -> internet as the VM public IP');
    t.equal((await tcpWhoamiDetail(lab.vmNetns('vm2'), ip1, PORT)).name, 'web1', 'vm2 -> web1');

    await lab.setLoadBalancer({ name: 'web', frontend: '10.240.255.100', port: 80, backends: [ip1, ip2], backendPort: PORT });
    await lab.waitForLbBackends('web', [ip1, ip2]);
    const names = new Set<string>();
    for (let i = 0; i < 30 && names.size < 2; i++) names.add((await tcpWhoamiDetail(lab.onpremNs, '10.240.255.100', 80)).name);
    t.same([...names].sort(), ['web1', 'web2'], 'both containers serve the load balancer frontend');
    await lab.removeLoadBalancer('web');

    // docker rm -f: the container is gone before any DEL; --rm still releases its IP.
    t.equal((await docker.docker(['rm', '-f', 'web2'])).code, 0, 'docker rm -f web2');
    const rm = await dockerRun(['--rm', 'web2', 'default']);
    t.equal(rm.code, 0, `docker-run.sh --rm after docker rm -f ${rm.stderr.trim()}`);
    t.notOk(Object.values(cni.state().endpoints).some((e) => e.ip === ip2), 'web2\'s endpoint is gone');
    const ipam = cni.state().ipam as { released: { items: string[]; head: number }; holdings: Record<string, { ip: string }> };
    t.ok(ipam.released.items.slice(ipam.released.head).includes(ip2), 'its IP is back in the pool\'s free queue');
    t.same(Object.values(ipam.holdings).map((h) => h.ip), [ip1], 'only web1 holds an address');

    // web1 dies without --rm; a new container under its name releases the dead one's endpoint first.
    const oldKey = Object.entries(cni.state().endpoints).find(([, e]) => e.podName === 'web1')?.[0];
    t.equal((await docker.docker(['rm', '-f', 'web1'])).code, 0, 'docker rm -f web1, no --rm');
    const again = await start('web1');
    const eps = Object.entries(cni.state().endpoints).filter(([, e]) => e.podName === 'web1');
    t.equal(eps.length, 1, `one endpoint named web1 (${again})`);
    t.not(eps[0]?.[0], oldKey, 'it is the new container\'s');
    t.equal((await dockerRun(['--rm', 'web1', 'default'])).code, 0, 'docker-run.sh --rm web1 on a live container');
    t.same(Object.keys(cni.state().endpoints), [], 'no endpoint left');
  });
}
