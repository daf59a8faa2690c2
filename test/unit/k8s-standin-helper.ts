// The stand-in API server on 127.0.0.1 and a real client-node KubeApi for it,
// for the unit tests of control/k8s (no root, no processes).
import type { Test } from 'tap';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApi, type WatchTiming } from '../../control/k8s/kube-api.js';
import { KubeStandin } from '../../lab/kube-standin.js';

export async function startStandin(t: Test, opts: { bookmarkMs?: number; timing?: Partial<WatchTiming>; apiTimeoutMs?: number } = {}): Promise<{ s: KubeStandin; api: KubeApi; port: number }> {
  const s = new KubeStandin(opts.bookmarkMs ?? 0);
  const port = await s.listen();
  t.teardown(() => s.close());
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'standin', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'daemon', token: 'test' }],
    contexts: [{ name: 'standin', cluster: 'standin', user: 'daemon' }],
    currentContext: 'standin',
  });
  return { s, api: new KubeApi(kc, opts.apiTimeoutMs ?? 5_000, opts.timing), port };
}

/** Poll a condition (never a fixed sleep); the timeout only bounds a broken run. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
