// The Node launcher as a runtime runs it (bin/azure-vnet, the bundle when
// built), forwarding to a daemon socket as INVOKE (the raw call, as the native
// shim sends it): the daemon side here is the real DaemonServer with a
// recording agent, so nothing touches the node. Checks the exact CNI output,
// that the daemon saw the call's arguments, that a daemon error keeps its CNI
// code, and that the daemon validates what the launcher did not.
import t from 'tap';
import path from 'node:path';
import { run } from '../../control/exec.js';
import { createLogger } from '../../control/log.js';
import { PoolExhaustedError } from '../../control/errors.js';
import type { AgentApi, CniCall } from '../../cni/types.js';
import { DaemonServer } from '../../control/daemon/server.js';
import { FIXED_RESULT } from '../unit/cni-fake-agent.js';
import { REPO_ROOT, baseConfig, oneJsonDoc, runInProcess, tempDir } from '../unit/cni-helpers.js';

t.test('azure-vnet forwards ADD and DEL to the daemon socket', async (t) => {
  const dir = tempDir(t, 'fwd');
  const socketPath = path.join(dir, 'daemon.sock');
  const seen: { verb: string; call: CniCall }[] = [];
  let failNext = false;
  const nope = async (): Promise<never> => {
    throw new Error('not expected in this test');
  };
  const agent: AgentApi = {
    add: async (call) => {
      seen.push({ verb: 'ADD', call });
      if (failNext) throw new PoolExhaustedError('no free IP in the test pool');
      return FIXED_RESULT;
    },
    del: async (call) => {
      seen.push({ verb: 'DEL', call });
    },
    check: nope, gc: nope, status: nope, ipamAdd: nope, ipamDel: nope,
    close: async () => {},
  };
  const served: string[] = [];
  const server = new DaemonServer({ socketPath, agent, logger: createLogger({ name: 'test-daemon', level: 'silent' }), onRequest: (verb) => served.push(verb) });
  await server.listen();
  t.teardown(() => server.close());

  const conf = JSON.stringify(baseConfig(dir, '1.0.0', { daemonSocket: socketPath }));
  const plugin = (command: string, input = conf) => run([path.join(REPO_ROOT, 'bin', 'azure-vnet')], {
    input, timeoutMs: 30_000,
    env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: 'ctr-1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni', CNI_ARGS: 'K8S_POD_NAME=web;K8S_POD_NAMESPACE=prod' },
    // this runs the bundle, as a runtime would
  });

  const add = await plugin('ADD');
  t.equal(add.code, 0, `ADD exits 0 (${add.stderr})`);
  const doc = oneJsonDoc(t, add.stdout);
  t.equal(doc.cniVersion, '1.0.0', 'result in the requested version');
  // The same call answered in-process by the fake agent (same FIXED_RESULT) must print the same bytes.
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr-1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni', CNI_ARGS: 'K8S_POD_NAME=web;K8S_POD_NAMESPACE=prod' };
  const inProcess = await runInProcess({ env, stdin: conf, dir });
  t.equal(add.stdout, inProcess.stdout, 'byte-identical to the in-process result');
  t.same((doc.ips as { address: string }[]).map((i) => i.address), ['10.240.0.5/16', '10.240.0.6/16'], 'the daemon\'s IPs');
  t.equal(seen.length, 1, 'the daemon served the ADD');
  t.match(seen[0]!.call, { containerId: 'ctr-1', ifName: 'eth0', netns: '/proc/self/ns/net', args: { K8S_POD_NAME: 'web', K8S_POD_NAMESPACE: 'prod' } });
  t.equal(seen[0]!.call.config.daemonSocket, socketPath, 'the daemon validated the raw config');
  t.same(served, ['ADD'], 'one INVOKE, named by its CNI command');

  const del = await plugin('DEL');
  t.equal(del.code, 0, `DEL exits 0 (${del.stderr})`);
  t.equal(del.stdout, '', 'DEL prints nothing');
  t.equal(seen[1]?.verb, 'DEL');

  failNext = true;
  const failed = await plugin('ADD');
  t.equal(failed.code, 1, 'a daemon error fails the call');
  const err = oneJsonDoc(t, failed.stdout);
  t.equal(err.code, 100, 'the daemon\'s CNI code (IPAM exhausted) survives the socket');
  t.match(String(err.msg), /no free IP in the test pool/);

  // The launcher does not validate: the daemon does, with the plugin's own messages.
  const before = seen.length;
  const bad = await plugin('ADD', JSON.stringify(baseConfig(dir, '1.0.0', { daemonSocket: socketPath, mode: 'sideways' })));
  t.equal(bad.code, 1);
  t.match(oneJsonDoc(t, bad.stdout), { cniVersion: '1.0.0', code: 7, msg: /\bmode\b/ }, 'the daemon rejected the config');
  t.equal(seen.length, before, 'the agent was not asked');
  t.equal(served.length, 4, 'it was the daemon that answered');

  // No daemon on the named socket: the launcher runs the call itself (a bad config, so no agent is made here).
  const alone = await plugin('ADD', JSON.stringify(baseConfig(dir, '1.0.0', { daemonSocket: path.join(dir, 'nobody.sock'), mode: 'sideways' })));
  t.equal(alone.code, 1);
  t.match(oneJsonDoc(t, alone.stdout), { cniVersion: '1.0.0', code: 7, msg: /\bmode\b/ }, 'standalone: the same error');
  t.equal(alone.stderr, '', 'an absent daemon is not worth a word on stderr');
  t.equal(served.length, 4, 'the daemon was not involved');
});
