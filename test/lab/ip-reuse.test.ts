// An address released by one pod and handed to the next must work at once for
// the pods next to it, whose ARP caches still map it to the old pod's MAC (in
// iptables mode the pods share a bridge; in ebpf mode every neighbour is the
// host veth through proxy ARP). The plugin announces a new pod with a
// gratuitous ARP; without it the first pings after the reuse go to the old MAC.
import t from 'tap';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { MODES, VmCni, azureConflist } from './helpers/cni-harness.js';

for (const mode of MODES) {
  t.test(`a reused pod IP is reachable at once in ${mode} mode`, async (t) => {
    const lab = await Lab.up(defaultSpec(1, 2));
    t.teardown(() => lab.down());
    const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode }));
    const old = await cni.addPod('old');
    const neighbour = await cni.addPod('neighbour');
    t.ok(await ping(neighbour.netns, old.ip), 'the neighbour reaches the first pod (and caches its MAC)');
    await cni.del(old);
    const reborn = await cni.addPod('reborn');
    t.equal(reborn.ip, old.ip, 'the released address is handed to the next pod (a two-address pool)');
    // One probe, no retries: a stale neighbour entry would send it to the old MAC.
    t.ok(await ping(neighbour.netns, reborn.ip, { timeoutSec: 2 }), 'the neighbour reaches the new pod on its first try');
    await cni.del(reborn);
    await cni.del(neighbour);
  });
}
