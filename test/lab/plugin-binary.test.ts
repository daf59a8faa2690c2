// The plugin binaries as processes (the in-process front end is
// test/unit/cni-plugin.test.ts): the real bin/azure-vnet and bin/azure-vnet-ipam
// answer VERSION and reject a bad config before any agent exists (so nothing
// on this machine is touched), also through a symlink as /opt/cni/bin holds
// them; they honour no test hook; and the stdout guard keeps stdout one JSON
// document when the agent prints (the fake-agent entry, test/support/fake-plugin.ts).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { run } from '../../control/exec.js';
import { baseConfig, oneJsonDoc, REPO_ROOT, runBinary, tempDir } from '../unit/cni-helpers.js';

const SUPPORTED = '"supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]';

t.test('the real binaries: VERSION, a bad config, a symlink, no test hook', async (t) => {
  const dir = tempDir(t, 'binary');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  const link = path.join(dir, 'azure-vnet');
  fs.symlinkSync(path.join(REPO_ROOT, 'bin', 'azure-vnet'), link);
  // A module that proves it was loaded: the removed VNET_CNI_TEST_AGENT hook would have imported it.
  const marker = path.join(dir, 'hook-loaded');
  const hook = path.join(dir, 'hook.mjs');
  fs.writeFileSync(hook, `import fs from 'node:fs'; fs.writeFileSync(${JSON.stringify(marker)}, 'x'); export async function createAgent() { throw new Error('hook'); }\n`);
  for (const [plugin, exe] of [['azure-vnet', path.join(REPO_ROOT, 'bin', 'azure-vnet')], ['azure-vnet-ipam', path.join(REPO_ROOT, 'bin', 'azure-vnet-ipam')], ['azure-vnet (symlink)', link]] as const) {
    const version = await run([exe], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"0.4.0"}', timeoutMs: 30_000 });
    t.equal(version.code, 0, `${plugin}: VERSION exits 0 (${version.stderr.slice(0, 200)})`);
    t.equal(version.stdout, `{"cniVersion":"0.4.0",${SUPPORTED}}\n`, `${plugin}: exact VERSION output`);
    const env = { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: netns, CNI_IFNAME: 'eth0', VNET_CNI_TEST_AGENT: hook };
    const bad = await run([exe], { env, input: JSON.stringify(baseConfig(dir, '1.1.0', { ipam: { type: 'azure-vnet-ipam', environment: 'nowhere' } })), timeoutMs: 30_000 });
    t.equal(bad.code, 1, `${plugin}: a bad config fails`);
    t.same(oneJsonDoc(t, bad.stdout), { cniVersion: '1.1.0', code: 7, msg: "ipam.environment must be one of azure, fileIpam, static, kubernetes; got 'nowhere'" }, `${plugin}: code 7 naming the field`);
  }
  t.notOk(fs.existsSync(marker), 'VNET_CNI_TEST_AGENT is not honoured: the module was never loaded');
});

t.test('stdout stays one JSON document when the agent prints to stdout', async (t) => {
  const dir = tempDir(t, 'noise');
  const netns = path.join(dir, 'netns');
  fs.writeFileSync(netns, '');
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
  const ok = await runBinary({ dir, env, noise: true, stdin: JSON.stringify(baseConfig(dir, '1.0.0')) });
  t.equal(ok.code, 0, ok.stderr);
  t.match(oneJsonDoc(t, ok.stdout), { cniVersion: '1.0.0', ips: [{ address: '10.240.0.5/16' }, { address: '10.240.0.6/16' }] }, 'ADD result alone on stdout');
  t.match(ok.stderr, /noise from console\.log/, 'console.log went to stderr');
  t.match(ok.stderr, /noise from process\.stdout\.write/, 'process.stdout.write went to stderr');
  const failed = await runBinary({ dir, env, noise: true, fakeError: 'TryAgainError:pool busy', stdin: JSON.stringify(baseConfig(dir, '1.0.0')) });
  t.same(oneJsonDoc(t, failed.stdout), { cniVersion: '1.0.0', code: 11, msg: 'pool busy' }, 'error alone on stdout');
});
