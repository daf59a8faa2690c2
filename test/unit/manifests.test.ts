// The cluster install as shipped: docker/manifests/*.yaml, docker/conflists/,
// docker/Dockerfile. No cluster here, so this checks what a cluster would
// trip over: every document parses, the image is one name:tag everywhere,
// every host path the installer, the plugin and the daemon use is mounted at
// the same path, the conflists validate and agree with the mounts and the
// daemon's flags, the daemon's command parses with its real parser, the
// probes' command exists and fails the right way, RBAC covers the contract,
// and the CRD (when the Kubernetes helper's file is present) matches it.
import t from 'tap';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAllYaml } from '@kubernetes/client-node';
import type {
  KubernetesObject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Container,
  V1CustomResourceDefinition,
  V1DaemonSet,
  V1ServiceAccount,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { parseDaemonArgs } from '../../control/daemon/main.js';
import { loadPluginConfig, runStatusCli } from '../../control/cli/status.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const MANIFESTS = path.join(REPO, 'docker', 'manifests');
const CRD_FILE = path.join(MANIFESTS, 'crd-nodenetworkconfig.yaml');
const PKG_VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `vnet-cni:v${PKG_VERSION}`;
/** Where the Dockerfile puts the tree (WORKDIR); /vnet-cni/<x> in the image is <repo>/<x> here. */
const IMAGE_ROOT = '/vnet-cni';

/** The kinds the manifests ship, by `kind`: the client's models describe their JSON. */
interface Kinds {
  DaemonSet: V1DaemonSet;
  ServiceAccount: V1ServiceAccount;
  ClusterRole: V1ClusterRole;
  ClusterRoleBinding: V1ClusterRoleBinding;
  ConfigMap: V1ConfigMap;
  CustomResourceDefinition: V1CustomResourceDefinition;
}

/** Every document of every manifest file, as plain JSON (the client's model classes serialised back). */
function loadManifests(): { file: string; doc: KubernetesObject }[] {
  const out: { file: string; doc: KubernetesObject }[] = [];
  for (const name of readdirSync(MANIFESTS).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    const docs = loadAllYaml(readFileSync(path.join(MANIFESTS, name), 'utf8')) as unknown[];
    for (const d of docs) if (d) out.push({ file: name, doc: JSON.parse(JSON.stringify(d)) as KubernetesObject });
  }
  return out;
}

const docs = loadManifests();
const byKind = <K extends keyof Kinds>(kind: K): Kinds[K][] => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc as Kinds[K]);
const ds = byKind('DaemonSet')[0]!;
const pod = ds.spec!.template.spec!;
const daemon = pod.containers.find((c) => c.name === 'daemon')!;
const init = pod.initContainers!.find((c) => c.name === 'install-cni')!;
const conflistFiles = [path.join(REPO, 'docker', '10-azure.conflist'), ...readdirSync(path.join(REPO, 'docker', 'conflists')).map((f) => path.join(REPO, 'docker', 'conflists', f))];
const k8sConflists = conflistFiles.filter((f) => f.includes(`${path.sep}conflists${path.sep}`));

/** The host path behind a container path: the mount that covers it (longest prefix), or undefined. */
function hostPathOf(container: V1Container, p: string): { host: string; mount: V1VolumeMount } | undefined {
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const mounts = (container.volumeMounts ?? []).filter((m) => p === m.mountPath || p.startsWith(`${m.mountPath}/`));
  const m = mounts.sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const vol = m ? volumes.get(m.name) : undefined;
  if (!m || !vol?.hostPath) return undefined;
  return { host: path.join(vol.hostPath.path, path.relative(m.mountPath, p)), mount: m };
}

/** A container's command with $(VAR) replaced by what its env sets (downward API fields as <fieldPath>). */
function expandedCommand(c: V1Container): string[] {
  const env = new Map((c.env ?? []).map((e) => [e.name, e.value ?? `<${e.valueFrom?.fieldRef?.fieldPath ?? e.valueFrom?.configMapKeyRef?.key}>`]));
  return (c.command ?? []).map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => {
    if (!env.has(v)) throw new Error(`${c.name}: $(${v}) is not set in env`);
    return env.get(v)!;
  }));
}

t.test('every manifest parses and has its required fields', async (t) => {
  t.ok(docs.length >= 5, `${docs.length} documents`);
  for (const { file, doc } of docs) {
    t.ok(doc.apiVersion && doc.kind && doc.metadata?.name, `${file}: ${doc.kind}/${doc.metadata?.name} has apiVersion, kind, metadata.name`);
    const clusterScoped = ['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'Namespace'].includes(doc.kind ?? '');
    if (!clusterScoped) t.equal(doc.metadata?.namespace, 'kube-system', `${file}: ${doc.kind} lives in kube-system`);
  }
  for (const kind of ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet'] as const) t.equal(byKind(kind).length, 1, `one ${kind}`);
  t.same(ds.spec!.selector.matchLabels, ds.spec!.template.metadata?.labels, 'the selector matches the pod labels');
  t.equal(pod.serviceAccountName, byKind('ServiceAccount')[0]!.metadata?.name, 'the pods run as the ServiceAccount');
  t.equal(pod.hostNetwork, true, 'hostNetwork');
  t.equal(pod.priorityClassName, 'system-node-critical');
  t.same(pod.tolerations, [{ operator: 'Exists' }], 'tolerates every taint');
  t.equal(ds.spec!.updateStrategy?.type, 'RollingUpdate');
  t.equal(daemon.securityContext?.privileged, true, 'the daemon is privileged');
});

t.test('one image name:tag everywhere, matching package.json and the Dockerfile', async (t) => {
  const images = [...(pod.initContainers ?? []), ...pod.containers].map((c) => c.image);
  t.same([...new Set(images)], [IMAGE], `every container runs ${IMAGE}`);
  const dockerfile = readFileSync(path.join(REPO, 'docker', 'Dockerfile'), 'utf8');
  t.match(dockerfile, `-t ${IMAGE} `, 'the Dockerfile builds the same tag');
  t.match(readFileSync(path.join(REPO, 'docs', 'operations.md'), 'utf8'), IMAGE, 'docs/operations.md names the same tag');
  t.match(dockerfile, /^WORKDIR \/vnet-cni$/m, `the Dockerfile installs into ${IMAGE_ROOT}`);
});

t.test('the initContainer runs the installer with mounts at the same host paths', async (t) => {
  const cmd = init.command ?? [];
  t.equal(cmd[0], `${IMAGE_ROOT}/docker/node-install.sh`);
  t.ok(statSync(path.join(REPO, 'docker', 'node-install.sh')).mode & 0o111, 'node-install.sh exists and is executable');
  const env = new Map((init.env ?? []).map((e) => [e.name, e]));
  for (const name of ['CNI_BIN_DIR', 'CNI_CONF_DIR', 'VNET_APP_DIR']) {
    const dir = env.get(name)?.value ?? '';
    t.equal(hostPathOf(init, dir)?.host, dir, `${name} ${dir} is the host's ${dir}`);
  }
  const cm = byKind('ConfigMap')[0]!;
  t.equal(env.get('VNET_DATAPLANE')?.valueFrom?.configMapKeyRef?.name, cm.metadata?.name, 'the dataplane comes from the ConfigMap');
  t.ok(existsSync(path.join(REPO, 'docker', 'conflists', `10-azure-${cm.data?.dataplane}.conflist`)), `the ConfigMap's dataplane '${cm.data?.dataplane}' has a conflist`);
});

t.test('the daemon: its real parser accepts the command, and its paths are mounted', async (t) => {
  const argv = expandedCommand(daemon);
  t.equal(argv[0], `${IMAGE_ROOT}/bin/vnetctl`);
  t.ok(existsSync(path.join(REPO, 'bin', 'vnetctl')), 'bin/vnetctl exists in the tree the image copies');
  t.equal(argv[1], 'daemon');
  const flags = parseDaemonArgs(argv.slice(2));
  t.equal(flags['node-name'], '<spec.nodeName>', '--node-name $(NODE_NAME) from the downward API');
  t.throws(() => parseDaemonArgs(['--no-such-flag']), 'the parser does reject unknown flags');
  for (const [what, p, propagation] of [
    ['bpffs', '/sys/fs/bpf', 'Bidirectional'],
    ['pod netns', '/run/netns', 'HostToContainer'],
    ['pod netns', '/var/run/netns', 'HostToContainer'],
    ['state dir', flags['state-dir'], undefined],
    ['daemon log', path.dirname(flags['log-file']), undefined],
    ['daemon socket', path.dirname(flags.socket), undefined],
    ['metrics socket', path.dirname(flags['metrics-socket']), undefined],
    ['xtables lock', '/run/xtables.lock', undefined],
    ['kernel modules', '/lib/modules', undefined],
    ['installed conflist', '/etc/cni/net.d', undefined],
  ] as const) {
    const hp = hostPathOf(daemon, p);
    t.equal(hp?.host, p, `${what} ${p} is the host's ${p}`);
    if (propagation) t.equal(hp?.mount.mountPropagation, propagation, `${p} propagation ${propagation}`);
  }
  t.equal(hostPathOf(daemon, '/lib/modules')?.mount.readOnly, true, '/lib/modules read-only');
});

t.test('every shipped conflist validates; the Kubernetes ones agree with the daemon and the mounts', async (t) => {
  const flags = parseDaemonArgs(expandedCommand(daemon).slice(2));
  t.ok(k8sConflists.length >= 2, 'one conflist per dataplane');
  for (const file of conflistFiles) {
    const name = path.relative(REPO, file);
    const cfg = loadPluginConfig(file); // cni/config.ts parseNetConf: throws InvalidConfigError on any bad key
    t.equal(cfg.type, 'azure-vnet', `${name}: azure-vnet`);
    t.equal(cfg.ipam.type, 'azure-vnet-ipam', `${name}: azure-vnet-ipam`);
    const list = JSON.parse(readFileSync(file, 'utf8')) as { plugins: { type: string; capabilities?: { portMappings?: boolean } }[] };
    t.ok(list.plugins.some((p) => p.type === 'portmap' && p.capabilities?.portMappings), `${name}: portmap chained`);
    if (!k8sConflists.includes(file)) continue;
    t.equal(cfg.dataplane, path.basename(file).replace(/^10-azure-|\.conflist$/g, ''), `${name}: dataplane matches the file name`);
    t.equal(cfg.daemonSocket, flags.socket, `${name}: daemonSocket is the daemon's --socket`);
    t.equal(cfg.stateDir, flags['state-dir'], `${name}: stateDir is the daemon's --state-dir`);
    for (const [what, p] of [['log file dir', path.dirname(cfg.logFile)], ['stateDir', cfg.stateDir], ['socket dir', path.dirname(cfg.daemonSocket!)], ['bpfRoot', cfg.bpfRoot]] as const) {
      t.equal(hostPathOf(daemon, p)?.host, p, `${name}: ${what} ${p} is mounted at the host's path`);
    }
  }
});

t.test('the probes run `vnetctl status`, which exists and reports a missing daemon as not ready', async (t) => {
  const readiness = daemon.readinessProbe?.exec?.command ?? [];
  const liveness = daemon.livenessProbe?.exec?.command ?? [];
  t.same(readiness.slice(0, 2), [`${IMAGE_ROOT}/bin/vnetctl`, 'status']);
  t.same(liveness.slice(0, 2), [`${IMAGE_ROOT}/bin/vnetctl`, 'status']);
  t.ok(liveness.includes('--live'), 'liveness only asks the daemon to answer');
  const conflist = path.join(REPO, 'docker', 'conflists', '10-azure-ebpf.conflist');
  t.ok(statSync(path.join(REPO, 'bin', 'vnetctl')).mode & 0o111, 'bin/vnetctl is executable');
  t.match(readFileSync(path.join(REPO, 'control', 'cli', 'vnetctl.ts'), 'utf8'), /case 'status': \{\s+const \{ runStatusCli \}/, 'vnetctl status runs runStatusCli');
  // In-process (no node start-up per probe): what `vnetctl status ...` runs, with its stderr captured.
  for (const probe of [readiness, liveness]) {
    const args = [...probe.slice(2).map((a) => (a === '/etc/cni/net.d/10-azure.conflist' ? conflist : a)), '--socket', '/nonexistent/vnet-cni.sock'];
    let stderr = '';
    const code = await runStatusCli(args, { stdout: { write: () => true }, stderr: { write: (s: string) => ((stderr += s), true) } });
    t.equal(code, 1, `${probe.join(' ')}: exit 1 without a daemon`);
    t.match(stderr, /^not (ready|alive): daemon socket \/nonexistent\/vnet-cni.sock: .*ENOENT/, 'with the reason');
  }
});

t.test('RBAC covers the contract', async (t) => {
  const role = byKind('ClusterRole')[0]!;
  const binding = byKind('ClusterRoleBinding')[0]!;
  const sa = byKind('ServiceAccount')[0]!;
  t.equal(binding.roleRef.name, role.metadata?.name);
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata?.name, namespace: sa.metadata?.namespace }]);
  const need: [string, string, string[]][] = [
    ['vnetcni.dev', 'nodenetworkconfigs', ['get', 'list', 'watch']],
    ['vnetcni.dev', 'nodenetworkconfigs/status', ['get', 'update', 'patch']],
    ['', 'pods', ['get', 'list', 'watch']],
    ['', 'nodes', ['get', 'list', 'watch']],
    ['', 'namespaces', ['list', 'watch']],
    ['networking.k8s.io', 'networkpolicies', ['list', 'watch']],
    ['', 'nodes/status', ['get', 'patch', 'update']],
    ['', 'events', ['create', 'patch']],
  ];
  for (const [group, resource, verbs] of need) {
    for (const verb of verbs) {
      const ok = (role.rules ?? []).some((r) => (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource) && (r.verbs.includes(verb) || r.verbs.includes('*')));
      t.ok(ok, `${group || 'core'}/${resource}: ${verb}`);
    }
  }
});

t.test('the CRD matches the contract', { skip: existsSync(CRD_FILE) ? false : 'docker/manifests/crd-nodenetworkconfig.yaml is not on this branch (the k8s helper writes it)' }, async (t) => {
  const crd = byKind('CustomResourceDefinition')[0]!;
  t.equal(crd.spec.group, 'vnetcni.dev');
  t.equal(crd.metadata?.name, 'nodenetworkconfigs.vnetcni.dev');
  t.equal(crd.spec.scope, 'Namespaced');
  t.same(
    { kind: crd.spec.names.kind, plural: crd.spec.names.plural, singular: crd.spec.names.singular, short: crd.spec.names.shortNames },
    { kind: 'NodeNetworkConfig', plural: 'nodenetworkconfigs', singular: 'nodenetworkconfig', short: ['nnc'] },
  );
  const v = crd.spec.versions.find((x) => x.name === 'v1alpha1');
  t.ok(v?.served && v?.storage, 'v1alpha1 served and stored');
  t.ok(v?.subresources?.status !== undefined, 'status subresource on');
});

t.test('the Dockerfile carries what the installer and the DaemonSet use', async (t) => {
  const dockerfile = readFileSync(path.join(REPO, 'docker', 'Dockerfile'), 'utf8');
  const copied = [...dockerfile.matchAll(/^COPY --from=build \/src\/(\S+)(?: \/src\/(\S+))? \S+$/gm)].flatMap((m) => [m[1], m[2]]).filter(Boolean);
  // dist/ only in its product parts (the plugin entries live in dist/control/plugin); test/unit/layering.test.ts forbids the rest.
  for (const need of ['dist/cni', 'dist/control', 'dist/native', 'dist/bundle', 'dist/shim', 'bin', 'native', 'bpf', 'docker', 'node_modules', 'package.json', 'package-lock.json']) t.ok(copied.includes(need), `COPY ${need}`);
  t.match(dockerfile, /^ARG BUILD_IMAGE=node:20-bookworm$/m, 'build base: Debian 12, node 20 (ARG)');
  t.match(dockerfile, /^ARG RUNTIME_IMAGE=node:20-bookworm-slim$/m, 'runtime base: Debian 12 slim, node 20 (ARG)');
  t.match(dockerfile, /RUN npm run build/, 'the build stage runs npm run build');
});
