// The whole policy path in a lab VM, for each dataplane: `vnetctl daemon --policy-dir DIR`,
// pods added through libcni (forwarded to the daemon), a policy file written
// into the directory. Pod names come from CNI_ARGS, labels from Pod objects in
// the directory. Checks: traffic stops once the policy is in, a new pod
// selected by it is isolated from its first packet, removing the file opens
// up again, `vnetctl debug policy` shows the pod's rules and no difference
// with the kernel on a clean node, then flags one policy map entry (ebpf,
// bpftool) or one rule (iptables -D) deleted behind the daemon's back, and the
// metrics count rules and sync latency. A policy file with its kind misspelt
// isolates its namespace (fail closed) and shows as BROKEN. Then the daemon is restarted without
// --policy-dir (a flag lost from a unit file): the isolated pod stays
// isolated, a new pod starts default-deny, and the hold shows in STATUS, the
// metrics and `vnetctl debug policy`; only --disable-network-policy opens up.
import t from 'tap';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab } from '../../lab/lab.js';
import { defaultSpec } from '../../lab/spec.js';
import { ping } from '../../lab/tools/net.js';
import { pollUntil, startChild, stopChild, waitForLine } from '../../lab/children.js';
import { vmExecArgv } from '../../lab/vm-exec.js';
import { MODES, REPO, VM_CONF_DIR, VmCni, azureConflist } from './helpers/cni-harness.js';

const SOCKET = '/run/vnet-cni/daemon.sock';

const PODS = `
kind: Pod
metadata: { name: web, namespace: default, labels: { app: web } }
---
kind: Pod
metadata: { name: db, namespace: default, labels: { app: db } }
---
kind: Pod
metadata: { name: web2, namespace: default, labels: { app: web } }
`;
const WEB_FROM_NOBODY = `
kind: NetworkPolicy
metadata: { name: web-isolated, namespace: default }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress: [ { from: [ { podSelector: { matchLabels: { app: nobody } } } ] } ]
`;

const DB_FROM_WEB = `
kind: NetworkPolicy
metadata: { name: db-from-web, namespace: default }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress: [ { from: [ { podSelector: { matchLabels: { app: web } } } ], ports: [ { protocol: TCP, port: 5432 } ] } ]
`;

function put(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

for (const mode of MODES) t.test(`daemon --policy-dir in ${mode} mode`, async (t) => {
  const lab = await Lab.up(defaultSpec(1, 6));
  t.teardown(() => lab.down());
  const policyDir = path.join(lab.vmPaths('vm1').root, 'policy');
  mkdirSync(policyDir, { recursive: true });
  put(policyDir, 'pods.yaml', PODS);
  const vnetctl = [process.execPath, path.join(REPO, 'dist', 'control', 'cli', 'vnetctl.js')];
  let daemon: ChildProcess | undefined;
  const startDaemon = async (flags: string[]): Promise<void> => {
    const d = startChild(vmExecArgv(lab.names, 'vm1', [...vnetctl, 'daemon', '--socket', SOCKET, ...flags]));
    daemon = d;
    await waitForLine(d, /^READY /, 120_000, 'vnetctl daemon');
  };
  t.teardown(() => (daemon ? stopChild(daemon) : undefined));
  await startDaemon(['--policy-dir', policyDir]);
  const cni = new VmCni(lab, 'vm1', azureConflist({ cniVersion: '1.0.0', dataplane: mode, portmap: false, extra: { daemonSocket: SOCKET } }));
  const web = await cni.addPod('web');
  const db = await cni.addPod('db');
  t.ok(await ping(db.netns, web.ip), 'no policy: db reaches web');

  put(policyDir, 'web.yaml', WEB_FROM_NOBODY);
  await pollUntil(async () => ((await ping(db.netns, web.ip)) ? undefined : true), 30_000, 100, 'the policy to isolate web');
  t.pass('with the policy: db no longer reaches web');
  t.ok(await ping(web.netns, db.ip), 'web still reaches db (egress not isolated; replies pass)');

  // A new pod the policy selects is isolated from its first packet (its rules go in with the ADD).
  const web2 = await cni.addPod('web2');
  t.notOk(await ping(db.netns, web2.ip, { count: 3 }), 'the new web pod never answers db');

  const dbg = await lab.execVm('vm1', [...vnetctl, 'debug', 'policy', 'default/web']);
  t.equal(dbg.code, 0, dbg.stderr);
  t.match(dbg.stdout, /policy: source directory .*, synced, 1\/1 policies/);
  t.match(dbg.stdout, new RegExp(`default/web ${web.ip.replace(/\./g, '\\.')}\\n  selected by: default/web-isolated\\n  ingress: deny all\\n`));

  // The kernel against the computed policy: db's ingress has peer and port entries (or rules) to compare.
  const dbView = async (): Promise<string> => (await lab.execVm('vm1', [...vnetctl, 'debug', 'policy', 'default/db'])).stdout;
  put(policyDir, 'db.yaml', DB_FROM_WEB);
  const clean = await pollUntil(async () => {
    const out = await dbView();
    return /allow TCP\/5432 peers/.test(out) && !/not programmed yet|PROGRAMMED RULES DIFFER/.test(out) ? out : undefined;
  }, 30_000, 100, 'db-from-web to be programmed');
  t.match(clean, new RegExp(`kernel \\(${mode}\\): compared with the computed policy\\ndifferences: none\\n`), 'a clean node: no difference');
  const all = await lab.execVm('vm1', [...vnetctl, 'debug', 'policy']);
  t.match(all.stdout, /\ndifferences: none\n/, 'the whole node: no difference either');
  // No daemon answering (another socket): from the state file, only the kernel's own consistency.
  const noDaemon = await lab.execVm('vm1', [...vnetctl, 'debug', 'policy', '--socket', '/run/vnet-cni/none.sock']);
  t.equal(noDaemon.code, 0, noDaemon.stderr);
  t.match(noDaemon.stdout, new RegExp(`^control plane: state file .*\\npolicy: off \\(no daemon answered; this node enforces policy .*\\)\\nkernel \\(${mode}\\): no daemon: only the kernel's own consistency checked\\ndifferences: none\\n$`));
  const dbIp = db.ip.replace(/\./g, '\\.');
  if (mode === 'ebpf') {
    const host = (await lab.execVm('vm1', ['hostname'])).stdout.trim();
    const pin = `/sys/fs/bpf/vnet-cni/${host}/maps/vnet_pol_cidrs`;
    const dump = await lab.execVm('vm1', ['bpftool', '-j', 'map', 'dump', 'pinned', pin]);
    t.equal(dump.code, 0, dump.stderr);
    const first = (JSON.parse(dump.stdout) as { key: string[] }[])[0]!;
    const del = await lab.execVm('vm1', ['bpftool', 'map', 'delete', 'pinned', pin, 'key', ...first.key]);
    t.equal(del.code, 0, `bpftool map delete: ${del.stderr}`);
    const flagged = await dbView();
    t.comment(flagged.slice(flagged.indexOf('kernel (')));
    t.match(flagged, new RegExp(`\\n {2}! ${dbIp} missing: ingress id \\d+: peer entry \\S+ -> port set 1 missing\\n`), 'the deleted map entry is flagged');
  } else {
    const saved = await lab.execVm('vm1', ['iptables-save', '-t', 'filter']);
    const chain = /^-A (VNET-POLI-\S+) .*5432.* -j RETURN$/m.exec(saved.stdout)?.[1];
    t.ok(chain, 'db has an ingress chain with the 5432 rule');
    const del = await lab.execVm('vm1', ['iptables', '-w', '-D', chain!, '1']);
    t.equal(del.code, 0, `iptables -D: ${del.stderr}`);
    const flagged = await dbView();
    t.comment(flagged.slice(flagged.indexOf('kernel (')));
    t.match(flagged, new RegExp(`\\n {2}! ${dbIp} missing: ${chain}: missing -A ${chain} .*5432.* -j RETURN\\n`), 'the deleted rule is flagged');
  }
  rmSync(path.join(policyDir, 'db.yaml'));

  rmSync(path.join(policyDir, 'web.yaml'));
  await pollUntil(async () => ((await ping(db.netns, web.ip)) ? true : undefined), 30_000, 100, 'the policy removal to open web');
  t.ok(await ping(db.netns, web2.ip), 'policy file removed: web2 open too');

  // A policy with its kind misspelt cannot be read: it fails closed over its whole namespace, never open.
  put(policyDir, 'typo.yaml', 'kind: NetworkPolcy\nmetadata: { name: deny-db, namespace: default }\nspec: { podSelector: { matchLabels: { app: db } } }\n');
  await pollUntil(async () => ((await ping(db.netns, web.ip)) ? undefined : true), 30_000, 100, 'the broken policy to isolate the namespace');
  t.notOk(await ping(web.netns, db.ip, { count: 3 }), 'broken policy: db isolated both ways');
  const broken = await lab.execVm('vm1', [...vnetctl, 'debug', 'policy', 'default/web']);
  t.match(broken.stdout, /\nBROKEN: default\/deny-db: typo\.yaml: kind "NetworkPolcy" is not used by policy .*; the policy is broken: it isolates every pod in namespace default both ways/);
  t.match(broken.stdout, /default\/web \S+\n {2}selected by: default\/deny-db\n {2}ingress: deny all\n {2}egress: deny all\n/);
  const brokenMetrics = await lab.execVm('vm1', ['curl', '-s', '--unix-socket', '/run/vnet-cni/metrics.sock', 'http://x/metrics']);
  t.match(brokenMetrics.stdout, /\nvnet_cni_policy_policies\{state="invalid"\} 1\n/);
  rmSync(path.join(policyDir, 'typo.yaml'));
  await pollUntil(async () => ((await ping(db.netns, web.ip)) ? true : undefined), 30_000, 100, 'the broken file removed to open up');

  const metrics = await lab.execVm('vm1', ['curl', '-s', '--unix-socket', '/run/vnet-cni/metrics.sock', 'http://x/metrics']);
  t.match(metrics.stdout, /vnet_cni_policy_synced 1/);
  t.match(metrics.stdout, /vnet_cni_policy_sync_seconds_count [1-9]/);
  const sum = Number(/vnet_cni_policy_sync_seconds_sum (\S+)/.exec(metrics.stdout)?.[1]);
  const count = Number(/vnet_cni_policy_sync_seconds_count (\S+)/.exec(metrics.stdout)?.[1]);
  t.comment(`policy syncs: ${count}, mean change → enforced ${((sum / count) * 1000).toFixed(1)} ms (informational)`);

  // Restarted without --policy-dir: nothing opens up.
  put(policyDir, 'web.yaml', WEB_FROM_NOBODY);
  await pollUntil(async () => ((await ping(db.netns, web.ip)) ? undefined : true), 30_000, 100, 'the policy to isolate web again');
  await stopChild(daemon!);
  await startDaemon([]);
  t.notOk(await ping(db.netns, web.ip, { count: 3 }), 'no policy flag: web keeps its programmed isolation');
  const held = await cni.addPod('held');
  t.notOk(await ping(db.netns, held.ip, { count: 3 }), 'a new pod starts default-deny (ingress)');
  t.notOk(await ping(held.netns, db.ip, { count: 3 }), 'a new pod starts default-deny (egress)');
  const heldView = await lab.execVm('vm1', [...vnetctl, 'debug', 'policy']);
  t.match(heldView.stdout, /^policy: HELD \(this node enforces NetworkPolicy \(since .*\) but the daemon was started without --policy-dir or --network-policy: .*--disable-network-policy to turn policy off/m);
  t.match(heldView.stdout, new RegExp(`\\nkernel \\(${mode}\\): held, nothing computed: only the kernel's own consistency checked\\ndifferences: none\\n`), 'the held rules are consistent in the kernel');
  const heldMetrics = await lab.execVm('vm1', ['curl', '-s', '--unix-socket', '/run/vnet-cni/metrics.sock', 'http://x/metrics']);
  t.match(heldMetrics.stdout, /\nvnet_cni_policy_held 1\n/);
  const status = await lab.execVm('vm1', [...vnetctl, 'status', '--conflist', path.join(VM_CONF_DIR, '10-azure.conflist'), '--socket', SOCKET]);
  t.equal(status.code, 1, 'STATUS: not ready');
  t.match(status.stderr, /^not ready: this node enforces NetworkPolicy .*--disable-network-policy.* \(CNI code \d+\)/);

  // Turning policy off is an explicit act: every endpoint opens up.
  await stopChild(daemon!);
  await startDaemon(['--disable-network-policy']);
  t.ok(await ping(db.netns, web.ip), '--disable-network-policy: web open');
  t.ok(await ping(db.netns, held.ip), '--disable-network-policy: the held pod open (ingress)');
  t.ok(await ping(held.netns, db.ip), '--disable-network-policy: the held pod open (egress)');
  const off = await lab.execVm('vm1', [...vnetctl, 'debug', 'policy']);
  t.match(off.stdout, /^policy: off \(the daemon runs without --policy-dir or --network-policy\)/m);
  const offMetrics = await lab.execVm('vm1', ['curl', '-s', '--unix-socket', '/run/vnet-cni/metrics.sock', 'http://x/metrics']);
  t.match(offMetrics.stdout, /\nvnet_cni_policy_held 0\n/);
});
