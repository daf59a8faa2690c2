// The node store: concurrent transactions in one process are batched into
// shared writes but behave as if run alone, a failing transaction leaves no
// trace, a resolved transaction is already on disk, and a write by another
// process (another NodeStore, e.g. a standalone plugin) is never hidden by
// the in-memory copy.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NodeStore, type EndpointRecord, type NodeState } from '../../control/store/node-store.js';
import { StoreError } from '../../control/errors.js';

function tmpStore(t: Test): { dir: string; store: NodeStore } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vnet-store-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, store: new NodeStore(dir, 5_000) };
}

function ep(id: string): EndpointRecord {
  return { containerId: id, ifName: 'eth0', ip: '10.0.0.1' } as EndpointRecord;
}

function onDisk(dir: string): NodeState {
  return JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as NodeState;
}

t.test('parallel transactions all commit, each resolved after its change is on disk', async (t) => {
  const { dir, store } = tmpStore(t);
  const ids = Array.from({ length: 40 }, (_, i) => `c${i}`);
  const seenOnDisk: boolean[] = await Promise.all(ids.map((id) => store.transaction((s) => {
    s.endpoints[`${id}/eth0`] = ep(id);
    return id;
  }).then((ret) => {
    t.equal(ret, id, 'the transaction result is passed through');
    return `${id}/eth0` in onDisk(dir).endpoints;
  })));
  t.same(seenOnDisk, ids.map(() => true), 'every change was durable when its promise resolved');
  t.same(Object.keys((await store.peek()).endpoints).sort(), ids.map((i) => `${i}/eth0`).sort());
});

t.test('a failing transaction in a batch leaves no trace; the others commit', async (t) => {
  const { dir, store } = tmpStore(t);
  const results = await Promise.allSettled([
    store.transaction((s) => { s.endpoints['a/eth0'] = ep('a'); }),
    store.transaction((s) => { s.endpoints['bad/eth0'] = ep('bad'); throw new Error('boom'); }),
    store.transaction((s) => {
      t.notOk('bad/eth0' in s.endpoints, 'the next transaction does not see the failed one');
      s.endpoints['b/eth0'] = ep('b');
    }),
  ]);
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  t.same(Object.keys(onDisk(dir).endpoints).sort(), ['a/eth0', 'b/eth0']);
});

t.test('results are private copies: a later transaction does not change an earlier result', async (t) => {
  const { store } = tmpStore(t);
  const [first] = await Promise.all([
    store.transaction((s) => { s.endpoints['x/eth0'] = ep('x'); return s.endpoints['x/eth0']; }),
    store.transaction((s) => { s.endpoints['x/eth0']!.ip = '10.0.0.99'; }),
  ]);
  t.equal(first.ip, '10.0.0.1');
  t.equal((await store.peek()).endpoints['x/eth0']!.ip, '10.0.0.99');
});

t.test('another writer is seen: the in-memory copy never hides the file', async (t) => {
  const { dir, store } = tmpStore(t);
  await store.transaction((s) => { s.endpoints['mine/eth0'] = ep('mine'); });
  const other = new NodeStore(dir, 5_000);
  await other.transaction((s) => { s.endpoints['theirs/eth0'] = ep('theirs'); });
  t.same(Object.keys((await store.peek()).endpoints).sort(), ['mine/eth0', 'theirs/eth0'], 'peek sees the other write');
  await store.transaction((s) => {
    t.ok('theirs/eth0' in s.endpoints, 'a transaction starts from the other write');
    delete s.endpoints['mine/eth0'];
  });
  t.same(Object.keys(onDisk(dir).endpoints), ['theirs/eth0']);
});

t.test('a corrupt file is a StoreError, for peek and transactions', async (t) => {
  const { dir, store } = tmpStore(t);
  writeFileSync(path.join(dir, 'state.json'), '{not json');
  await t.rejects(store.peek(), StoreError);
  await t.rejects(store.transaction(() => {}), StoreError);
  t.equal(readFileSync(path.join(dir, 'state.json'), 'utf8'), '{not json', 'left as it was');
});
