// `vnetctl status` (the DaemonSet's probes) against a real DaemonServer with a
// fake agent, in this process: the probe is an INVOKE of CNI STATUS with the
// conflist's azure-vnet entry, so the daemon validates it like any call.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { runStatusCli } from '../../control/cli/status.js';
import { DaemonServer } from '../../control/daemon/server.js';
import { createLogger } from '../../control/log.js';
import { NotReadyError } from '../../cni/errors.js';
import { fakeAgent, type FakeCall, type FakeOptions } from './cni-fake-agent.js';
import { tempDir } from './cni-helpers.js';

async function status(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runStatusCli(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } });
  return { code, stdout, stderr };
}

t.test('vnetctl status asks the daemon for CNI STATUS', async (t) => {
  const dir = tempDir(t, 'status');
  const conflist = path.join(dir, '10-azure.conflist');
  // As the shipped conflists: cniVersion 1.0.0 (the probe asks at 1.1.0, the first with STATUS).
  fs.writeFileSync(conflist, JSON.stringify({ cniVersion: '1.0.0', name: 'azure', plugins: [{ type: 'azure-vnet', dataplane: 'ebpf', logFile: path.join(dir, 'azure-vnet.log'), ipam: { type: 'azure-vnet-ipam' } }, { type: 'portmap' }] }));
  const calls: FakeCall[] = [];
  const options: FakeOptions = {}; // read by the fake at each call
  const agent = fakeAgent((c) => calls.push(c), options);
  const socket = path.join(dir, 'daemon.sock');
  const served: string[] = [];
  const server = new DaemonServer({ socketPath: socket, agent, logger: createLogger({ name: 'test', level: 'silent' }), onRequest: (verb) => served.push(verb) });
  await server.listen();
  t.teardown(() => server.close());

  const ready = await status(['--conflist', conflist, '--socket', socket]);
  t.same(ready, { code: 0, stdout: `ready: daemon ${socket} answered STATUS for network azure (ebpf)\n`, stderr: '' });
  t.same(served, ['STATUS'], 'one INVOKE of STATUS');
  t.match(calls, [{ method: 'status', config: { name: 'azure', cniVersion: '1.1.0', dataplane: 'ebpf' } }], 'the daemon validated the entry and asked the agent');

  options.error = new NotReadyError('no free pod IP on this node');
  t.same(await status(['--conflist', conflist, '--socket', socket]), { code: 1, stdout: '', stderr: 'not ready: no free pod IP on this node (CNI code 50)\n' }, 'not ready, with the reason and the code');
  t.same(await status(['--conflist', conflist, '--socket', socket, '--live']), { code: 0, stdout: `alive: daemon ${socket} answered (STATUS: code 50 no free pod IP on this node)\n`, stderr: '' }, 'alive all the same');

  const none = await status(['--conflist', conflist, '--socket', path.join(dir, 'nobody.sock')]);
  t.equal(none.code, 1);
  t.match(none.stderr, /^not ready: daemon socket .*nobody\.sock: connect ENOENT/, 'no daemon: not ready, never a local agent');
  const bad = await status(['--conflist', path.join(dir, 'missing.conflist'), '--socket', socket]);
  t.match(bad, { code: 1, stderr: /^not ready: conflist .*missing\.conflist: ENOENT/ });
});
