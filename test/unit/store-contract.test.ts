// The StateStore contract (control/agent/ports.ts), run against the file
// store the product uses and the in-memory one the Agent's unit tests use:
// if the fake drifts from the real semantics, this fails.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NodeStore, type EndpointRecord } from '../../control/store/node-store.js';
import type { StateStore } from '../../control/agent/ports.js';
import { MemoryStore } from './fakes/memory-store.js';

const stores: [string, (t: Test) => StateStore][] = [
  ['file store', (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-contract-${process.pid}-`));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    return new NodeStore(dir, 5_000);
  }],
  ['memory store', () => new MemoryStore()],
];

function ep(id: string, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { containerId: id, ifName: 'eth0', ip: '10.0.0.1', ...extra } as EndpointRecord;
}

for (const [name, make] of stores) {
  t.test(name, async (t) => {
    t.test('starts empty', async (t) => {
      const s = make(t);
      t.match(await s.peek(), { version: 1, endpoints: {}, ipam: {} });
    });

    t.test('peek hands out a copy', async (t) => {
      const s = make(t);
      await s.transaction((st) => void (st.endpoints.a = ep('a')));
      const view = await s.peek();
      delete view.endpoints.a;
      t.ok((await s.peek()).endpoints.a, 'changing a peeked state changes nothing');
    });

    t.test('a resolved transaction is committed before it resolves, with its value', async (t) => {
      const s = make(t);
      const v = await s.transaction((st) => {
        st.endpoints.a = ep('a');
        return 42;
      });
      t.equal(v, 42);
      t.ok((await s.peek()).endpoints.a);
    });

    t.test('a failing transaction leaves no trace, and the next one sees the state before it', async (t) => {
      const s = make(t);
      await s.transaction((st) => void (st.endpoints.a = ep('a')));
      await t.rejects(s.transaction(async (st) => {
        st.endpoints.b = ep('b');
        delete st.endpoints.a;
        throw new Error('boom');
      }), /boom/);
      t.same(Object.keys((await s.peek()).endpoints), ['a']);
      await s.transaction((st) => t.same(Object.keys(st.endpoints), ['a'], 'inside the next transaction too'));
    });

    t.test('the state a transaction changed after it resolved is not the store\'s', async (t) => {
      const s = make(t);
      let kept: { endpoints: Record<string, EndpointRecord> } | undefined;
      await s.transaction((st) => {
        st.endpoints.a = ep('a');
        kept = st;
      });
      delete kept!.endpoints.a;
      t.ok((await s.peek()).endpoints.a);
    });

    t.test('concurrent transactions run one at a time, each on the one before', async (t) => {
      const s = make(t);
      let inside = 0;
      let most = 0;
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.transaction(async (st) => {
        inside++;
        most = Math.max(most, inside);
        const n = Object.keys(st.endpoints).length;
        await new Promise((r) => setImmediate(r));
        st.endpoints[`c${i}`] = ep(`c${i}`, { mtu: n });
        inside--;
      })));
      t.equal(most, 1, 'never two at once');
      const mtus = Object.values((await s.peek()).endpoints).map((e) => e.mtu).sort((a, b) => a - b);
      t.same(mtus, Array.from({ length: 20 }, (_, i) => i), 'each saw every earlier commit');
    });

    t.test('a failing transaction among concurrent ones affects only itself', async (t) => {
      const s = make(t);
      const results = await Promise.allSettled(['a', 'bad', 'c'].map((id) => s.transaction((st) => {
        st.endpoints[id] = ep(id);
        if (id === 'bad') throw new Error('bad');
      })));
      t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      t.same(Object.keys((await s.peek()).endpoints).sort(), ['a', 'c']);
    });

    t.test('undefined fields do not survive a commit (JSON semantics)', async (t) => {
      const s = make(t);
      await s.transaction((st) => void (st.endpoints.a = ep('a', { owner: undefined })));
      t.notOk('owner' in (await s.peek()).endpoints.a!);
    });
  });
}
