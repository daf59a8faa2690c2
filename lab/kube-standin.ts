// A stand-in Kubernetes API server for tests and the demo (no kube-apiserver
// binary exists on this machine). Plain HTTP on loopback. It implements the
// real protocol for what the daemon uses, so @kubernetes/client-node talks to
// it unchanged:
//   - NodeNetworkConfigs (vnetcni.dev/v1alpha1, namespaced): list, watch, get,
//     patch/put of the status subresource;
//   - pods: list/watch (all namespaces or one) with fieldSelector spec.nodeName;
//   - nodes: get, get/patch of nodes/status (strategic merge of conditions by type);
//   - namespaces (each gets the `kubernetes.io/metadata.name` label, as the API
//     server does since 1.21) and networkpolicies (networking.k8s.io/v1,
//     namespaced): list and watch.
// Lists and watches take a labelSelector (=, ==, !=, in, notin, exists, !key)
// and a fieldSelector; a watch with a selector sees an object that starts
// matching as ADDED and one that stops matching as DELETED, as the real
// server's watch cache does.
// Lists carry metadata.resourceVersion; `?watch=1&resourceVersion=N&allowWatchBookmarks=true`
// streams newline-delimited events (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR) from
// the history after N; an RV older than the compacted history gets 410 Gone
// (an ERROR event carrying a Status with code 410, or HTTP 410 when
// `goneAsHttp` is set, and always HTTP 410 for a list at an exact too-old RV).
// Test controls: put/delete objects, compact history, drop all watches (a
// clean close or a TCP reset), fail the next N requests with 500, the faults
// a real API server produces on watches (an ERROR event with a non-410 Status,
// a request accepted and never answered, a stream that goes silent after its
// headers and ignores timeoutSeconds), and a request log with timestamps.
//
// Run as a process (inside a lab VM netns):
//   node dist/lab/kube-standin.js [--port 0] [--bookmark-ms 1000]
// prints `LISTENING <port>`, then takes one JSON command per stdin line
// ({"id":1,"op":"put","object":{...}}) and answers one JSON line per command.
// It exits when stdin closes.
import http from 'node:http';
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { AddressInfo, Socket } from 'node:net';

type Json = Record<string, unknown>;

/** A scalar JSON value as text (what field selectors and patch paths compare); '' for anything else. */
function scalarText(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
}
export type Collection = 'nodenetworkconfigs' | 'pods' | 'nodes' | 'namespaces' | 'networkpolicies';

export interface KubeObj {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; generation?: number; labels?: Record<string, string>; creationTimestamp?: string };
  spec?: unknown;
  status?: unknown;
  [key: string]: unknown;
}

export interface LoggedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  contentType?: string;
  watch: boolean;
  /** Date.now() when the request arrived */
  at: number;
  /** the injected watch fault this request got, if any */
  fault?: WatchFault['kind'];
}

/**
 * A fault injected into the next watch requests (of one collection, or any):
 * 'error': 200, then one ERROR event carrying a Status of `code`, then the end
 * of the stream (what an API server does on an etcd error);
 * 'hang': the connection is accepted and the request never answered (a
 * backend gone silent behind a load balancer);
 * 'stall': headers, then nothing ever: no events, no bookmarks, no close at
 * timeoutSeconds.
 */
export interface WatchFault {
  kind: 'error' | 'hang' | 'stall';
  code?: number;
  /** how many watch requests get it (Infinity: until cleared) */
  count: number;
  collection?: Collection;
}

interface HistoryEvent {
  rv: number;
  collection: Collection;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObj;
  /** the object before a MODIFIED, to tell a watch with a selector that it started or stopped matching */
  prev?: KubeObj;
}

interface Watcher {
  collection: Collection;
  namespace?: string;
  selector: (o: KubeObj) => boolean;
  res: http.ServerResponse;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
}

const KINDS: Record<Collection, { kind: string; apiVersion: string; namespaced: boolean }> = {
  nodenetworkconfigs: { kind: 'NodeNetworkConfig', apiVersion: 'vnetcni.dev/v1alpha1', namespaced: true },
  pods: { kind: 'Pod', apiVersion: 'v1', namespaced: true },
  nodes: { kind: 'Node', apiVersion: 'v1', namespaced: false },
  namespaces: { kind: 'Namespace', apiVersion: 'v1', namespaced: false },
  networkpolicies: { kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1', namespaced: true },
};

/** The API group prefix each collection is served under. */
const GROUP_OF: Record<Collection, string> = {
  nodenetworkconfigs: 'apis/vnetcni.dev/v1alpha1',
  pods: 'api/v1',
  nodes: 'api/v1',
  namespaces: 'api/v1',
  networkpolicies: 'apis/networking.k8s.io/v1',
};

const clone = <T>(x: T): T => structuredClone(x);

function status(code: number, reason: string, message: string): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** A field selector of `a.b=value[,c=value]` terms (all the daemon uses). */
function fieldSelector(text: string | undefined): (o: KubeObj) => boolean {
  if (!text) return () => true;
  const terms = text.split(',').map((t) => {
    const [path, value] = t.split(/==?/) as [string, string];
    return { path: path.split('.'), value };
  });
  return (o) => terms.every(({ path, value }) => scalarText(path.reduce<unknown>((v, k) => (v as Json | undefined)?.[k], o)) === value);
}

/** Split on commas outside parentheses (`a in (x,y),b` is two terms). */
function splitTerms(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

/**
 * A label selector in the API's string form: `k=v`, `k==v`, `k!=v`,
 * `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-separated (all must hold).
 * Throws a message on bad syntax (the server answers 400).
 */
export function labelSelector(text: string | undefined): (o: KubeObj) => boolean {
  if (!text) return () => true;
  const tests = splitTerms(text).map((term): ((labels: Record<string, string>) => boolean) => {
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (m) {
      const [, key, op, list] = m as unknown as [string, string, string, string];
      const values = new Set(list.split(',').map((v) => v.trim()).filter((v) => v !== ''));
      return op === 'in' ? (l) => key in l && values.has(l[key]!) : (l) => !(key in l) || !values.has(l[key]!);
    }
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(term);
    if (m) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      return op === '!=' ? (l) => l[key] !== value : (l) => key in l && l[key] === value;
    }
    m = /^(!?)([\w./-]+)$/.exec(term);
    if (m) {
      const [, not, key] = m as unknown as [string, string, string];
      return not ? (l) => !(key in l) : (l) => key in l;
    }
    throw new Error(`unable to parse requirement: ${JSON.stringify(term)}`);
  });
  return (o) => tests.every((test) => test(o.metadata.labels ?? {}));
}

/** RFC 7386 merge patch; `byKey` merges the named arrays element-wise by a key (strategic merge of conditions). */
function mergePatch(target: unknown, patch: unknown, byKey?: Record<string, string>): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return clone(patch);
  const out: Json = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Json) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (byKey?.[k] && Array.isArray(v) && Array.isArray(out[k])) {
      const key = byKey[k];
      const merged = [...(out[k] as Json[])].map((e) => ({ ...e }));
      for (const item of v as Json[]) {
        const at = merged.findIndex((e) => e[key] === item[key]);
        if (at >= 0) merged[at] = mergePatch(merged[at], item) as Json;
        else merged.push(clone(item));
      }
      out[k] = merged;
    } else out[k] = mergePatch(out[k], v, byKey);
  }
  return out;
}

/** RFC 6902 JSON patch (add, replace, remove, test). Throws a message on a bad op. */
function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new Error('JSON patch must be an array of operations');
  let root = clone(doc);
  for (const op of ops as Json[]) {
    const path = scalarText(op.path);
    const parts = path.split('/').slice(1).map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
    if (parts.length === 0) {
      if (op.op === 'add' || op.op === 'replace') root = clone(op.value);
      else throw new Error(`unsupported op ${String(op.op)} on the root`);
      continue;
    }
    let parent = root as Json | unknown[];
    for (const p of parts.slice(0, -1)) {
      parent = (parent as Json)[p] as Json;
      if (typeof parent !== 'object' || parent === null) throw new Error(`path ${path} does not exist`);
    }
    const last = parts[parts.length - 1]!;
    const arr = Array.isArray(parent) ? parent : undefined;
    const index = arr ? (last === '-' ? arr.length : Number(last)) : -1;
    switch (op.op) {
      case 'add':
        if (arr) arr.splice(index, 0, clone(op.value));
        else (parent as Json)[last] = clone(op.value);
        break;
      case 'replace':
        if (arr ? index >= arr.length : !Object.hasOwn(parent, last)) throw new Error(`replace: path ${path} does not exist`);
        if (arr) arr[index] = clone(op.value);
        else (parent as Json)[last] = clone(op.value);
        break;
      case 'remove':
        if (arr) arr.splice(index, 1);
        else if (Object.hasOwn(parent, last)) delete (parent as Json)[last];
        else throw new Error(`remove: path ${path} does not exist`);
        break;
      case 'test':
        if (JSON.stringify(arr ? arr[index] : (parent as Json)[last]) !== JSON.stringify(op.value)) throw new Error(`test failed at ${path}`);
        break;
      default:
        throw new Error(`unsupported JSON patch op ${String(op.op)}`);
    }
  }
  return root;
}

export class KubeStandin {
  private rv = 1;
  private readonly objects = new Map<string, KubeObj>(); // `${collection}/${ns}/${name}`
  private history: HistoryEvent[] = [];
  /** watches from an RV below this get 410 */
  private compactedBelow = 0;
  private failures = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private faults: WatchFault[] = [];
  /** requests held by 'hang' and 'stall' faults, closed by close() */
  private readonly held = new Set<http.ServerResponse>();
  /** held requests whose connection the client closed */
  heldClosed = 0;
  private listHangs = 0;
  readonly requests: LoggedRequest[] = [];
  /** answer a too-old watch with HTTP 410 instead of a 200 stream carrying an ERROR event */
  goneAsHttp = false;
  private readonly server: http.Server;

  constructor(readonly bookmarkMs = 1000) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.send(req, res, 500, status(500, 'InternalError', (err as Error).message)));
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.dropWatches();
    for (const res of this.held) res.socket?.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- test controls -----------------------------------------------------

  get resourceVersion(): number {
    return this.rv;
  }

  /** Create or replace an object (spec, labels, status as given). Bumps generation when spec changes. */
  put(object: KubeObj): KubeObj {
    const collection = this.collectionOf(object);
    const key = this.key(collection, object.metadata.namespace, object.metadata.name);
    const old = this.objects.get(key);
    const next = clone(object);
    const meta = KINDS[collection];
    next.apiVersion = meta.apiVersion;
    next.kind = meta.kind;
    next.metadata.uid = old?.metadata.uid ?? object.metadata.uid ?? randomUUID();
    if (collection === 'namespaces') next.metadata.labels = { ...next.metadata.labels, 'kubernetes.io/metadata.name': next.metadata.name };
    next.metadata.creationTimestamp = old?.metadata.creationTimestamp ?? new Date().toISOString();
    const specChanged = !old || JSON.stringify(old.spec) !== JSON.stringify(next.spec);
    next.metadata.generation = (old?.metadata.generation ?? 0) + (specChanged ? 1 : 0);
    if (old && next.status === undefined) next.status = old.status;
    this.commit(collection, key, next, old ? 'MODIFIED' : 'ADDED');
    return clone(next);
  }

  get(collection: Collection, namespace: string | undefined, name: string): KubeObj | undefined {
    const o = this.objects.get(this.key(collection, namespace, name));
    return o ? clone(o) : undefined;
  }

  delete(collection: Collection, namespace: string | undefined, name: string): boolean {
    const key = this.key(collection, namespace, name);
    const old = this.objects.get(key);
    if (!old) return false;
    this.objects.delete(key);
    const gone = clone(old);
    gone.metadata.resourceVersion = String(++this.rv);
    const event: HistoryEvent = { rv: this.rv, collection, type: 'DELETED', object: gone };
    this.history.push(event);
    this.notify(event);
    return true;
  }

  /**
   * Forget the event history up to now, as etcd compaction does: a watch or
   * resume from an older RV gets 410 Gone. Open watches get the 410 ERROR
   * event and are closed (their clients must list again).
   */
  compact(): void {
    this.compactedBelow = this.rv;
    this.history = [];
    for (const w of [...this.watchers]) {
      w.res.write(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', 'too old resource version (compacted)') })}\n`);
      this.endWatch(w);
    }
  }

  /** Close every watch connection at once (an API server restart or a dropped connection). */
  dropWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      this.endWatch(w);
      w.res.socket?.destroy();
    }
    return n;
  }

  /** Close every watch connection with a TCP reset (RST), as a crashed backend or a middlebox does. */
  resetWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      clearInterval(w.timer);
      this.watchers.delete(w);
      const socket = w.res.socket;
      if (socket && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else socket?.destroy();
    }
    return n;
  }

  /** Give the next watch requests a fault (see WatchFault); faults queue in order. */
  injectWatchFault(fault: WatchFault): void {
    this.faults.push({ ...fault });
  }

  /** Forget the queued faults (requests already held stay held until the client gives up). */
  clearFaults(): void {
    this.faults = [];
    this.listHangs = 0;
  }

  /** The next n list requests are accepted and never answered (a silent backend, for lists). */
  hangLists(n: number): void {
    this.listHangs = n;
  }

  /** Requests held by a 'hang' or 'stall' fault whose client has not closed them yet. */
  get heldRequests(): number {
    return this.held.size;
  }

  /** The next n API requests (not controls) fail with HTTP 500. */
  failNext(n: number): void {
    this.failures = n;
  }

  /** Send a BOOKMARK to every open watch now. */
  bookmarkNow(): void {
    for (const w of this.watchers) this.bookmark(w);
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  // ---- storage -------------------------------------------------------------

  private collectionOf(object: KubeObj): Collection {
    const found = (Object.keys(KINDS) as Collection[]).find((c) => KINDS[c].kind === object.kind);
    if (!found) throw new Error(`unknown kind ${String(object.kind)}; one of ${Object.values(KINDS).map((k) => k.kind).join(', ')}`);
    return found;
  }

  private key(collection: Collection, namespace: string | undefined, name: string): string {
    return `${collection}/${KINDS[collection].namespaced ? namespace ?? 'default' : ''}/${name}`;
  }

  private commit(collection: Collection, key: string, object: KubeObj, type: 'ADDED' | 'MODIFIED'): void {
    const prev = this.objects.get(key);
    object.metadata.resourceVersion = String(++this.rv);
    this.objects.set(key, object);
    const event: HistoryEvent = { rv: this.rv, collection, type, object: clone(object), ...(prev && type === 'MODIFIED' ? { prev: clone(prev) } : {}) };
    this.history.push(event);
    this.notify(event);
  }

  /**
   * What a watch of `collection` (in `namespace`, with `selector`) sees of an
   * event: nothing, or the event, with MODIFIED turned into ADDED when the
   * object starts matching and into DELETED (the new object) when it stops.
   */
  private seenAs(e: HistoryEvent, collection: Collection, namespace: string | undefined, selector: (o: KubeObj) => boolean): string | undefined {
    if (e.collection !== collection || (namespace && e.object.metadata.namespace !== namespace)) return undefined;
    const now = selector(e.object);
    let type: string = e.type;
    if (e.type === 'MODIFIED' && e.prev) {
      const before = selector(e.prev);
      if (!before && !now) return undefined;
      if (!before) type = 'ADDED';
      else if (!now) type = 'DELETED';
    } else if (!now) return undefined;
    return `${JSON.stringify({ type, object: e.object })}\n`;
  }

  private notify(event: HistoryEvent): void {
    for (const w of this.watchers) {
      const line = this.seenAs(event, w.collection, w.namespace, w.selector);
      if (line) w.res.write(line);
    }
  }

  private bookmark(w: Watcher): void {
    if (!w.bookmarks) return;
    const meta = KINDS[w.collection];
    w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: meta.kind, apiVersion: meta.apiVersion, metadata: { resourceVersion: String(this.rv) } } })}\n`);
  }

  private endWatch(w: Watcher): void {
    clearInterval(w.timer);
    this.watchers.delete(w);
    w.res.end();
  }

  // ---- HTTP ------------------------------------------------------------------

  private send(req: http.IncomingMessage, res: http.ServerResponse, code: number, body: unknown, watch = false): void {
    this.log(req, code, watch);
    if (res.headersSent) {
      res.end();
      return;
    }
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private log(req: http.IncomingMessage, code: number, watch: boolean, fault?: WatchFault['kind']): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({
      method: req.method ?? '', path: url.pathname, query: Object.fromEntries(url.searchParams), status: code, watch, at: Date.now(),
      ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}),
      ...(fault ? { fault } : {}),
    });
  }

  /** The first queued fault for a watch of `collection`, consumed. */
  private takeFault(collection: Collection): WatchFault | undefined {
    const at = this.faults.findIndex((f) => !f.collection || f.collection === collection);
    if (at < 0) return undefined;
    const fault = this.faults[at]!;
    if (--fault.count <= 0) this.faults.splice(at, 1);
    return fault;
  }

  /** Keep a request open and unanswered (or answered with headers only) until the client closes it. */
  private hold(res: http.ServerResponse): void {
    this.held.add(res);
    res.on('close', () => {
      if (this.held.delete(res)) this.heldClosed++;
    });
  }

  /** Serve a watch fault; true when the request was handled by it. */
  private serveFault(req: http.IncomingMessage, res: http.ServerResponse, collection: Collection): boolean {
    const fault = this.takeFault(collection);
    if (!fault) return false;
    if (fault.kind === 'hang') {
      this.log(req, 0, true, 'hang');
      this.hold(res);
      return true;
    }
    this.log(req, 200, true, fault.kind);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (fault.kind === 'stall') {
      this.hold(res);
      return true;
    }
    const code = fault.code ?? 500;
    res.end(`${JSON.stringify({ type: 'ERROR', object: status(code, code === 500 ? 'InternalError' : 'Failure', `stand-in: injected watch error ${code}`) })}\n`);
    return true;
  }

  /**
   * /apis/vnetcni.dev/v1alpha1/namespaces/NS/nodenetworkconfigs[/NAME[/status]], /api/v1/[namespaces/NS/]pods,
   * /api/v1/nodes/NAME[/status], /api/v1/namespaces[/NAME], /apis/networking.k8s.io/v1/[namespaces/NS/]networkpolicies[/NAME]
   */
  private route(pathname: string): { collection: Collection; namespace?: string; name?: string; sub?: string } | undefined {
    const p = pathname.split('/').filter(Boolean);
    let group: string;
    let m: string[] = [];
    if (p[0] === 'apis' && p.length >= 3) {
      group = p.slice(0, 3).join('/');
      m = p.slice(3);
    } else if (p[0] === 'api' && p[1] === 'v1') {
      group = 'api/v1';
      m = p.slice(2);
    } else return undefined;
    let namespace: string | undefined;
    if (m[0] === 'namespaces' && m.length >= 3) {
      namespace = m[1];
      m = m.slice(2);
    }
    const collection = m[0] as Collection;
    if (!(collection in KINDS) || GROUP_OF[collection] !== group) return undefined;
    if (namespace && !KINDS[collection].namespaced) return undefined;
    return { collection, ...(namespace ? { namespace } : {}), ...(m[1] ? { name: m[1] } : {}), ...(m[2] ? { sub: m[2] } : {}) };
  }

  /** The list/watch filter of a request: fieldSelector and labelSelector together. */
  private selectorOf(q: URLSearchParams): (o: KubeObj) => boolean {
    const fields = fieldSelector(q.get('fieldSelector') ?? undefined);
    const labels = labelSelector(q.get('labelSelector') ?? undefined);
    return (o) => fields(o) && labels(o);
  }

  private async body(req: http.IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? JSON.parse(text) : undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const r = this.route(url.pathname);
    if (!r) return this.send(req, res, 404, status(404, 'NotFound', `the server could not find the requested resource ${url.pathname}`));
    if (this.failures > 0) {
      this.failures--;
      return this.send(req, res, 500, status(500, 'InternalError', 'stand-in: injected failure'));
    }
    const q = url.searchParams;
    const watch = q.get('watch') === '1' || q.get('watch') === 'true';
    if (req.method === 'GET' && !r.name) {
      let selector: (o: KubeObj) => boolean;
      try {
        selector = this.selectorOf(q);
      } catch (err) {
        return this.send(req, res, 400, status(400, 'BadRequest', `invalid selector: ${(err as Error).message}`), watch);
      }
      if (!watch && this.listHangs > 0) {
        this.listHangs--;
        this.log(req, 0, false, 'hang');
        return this.hold(res);
      }
      return watch ? this.watch(req, res, r, q, selector) : this.list(req, res, r, q, selector);
    }
    if (!r.name) return this.send(req, res, 405, status(405, 'MethodNotAllowed', `${req.method} on a collection`));
    const key = this.key(r.collection, r.namespace, r.name);
    const current = this.objects.get(key);
    if (!current) return this.send(req, res, 404, status(404, 'NotFound', `${r.collection} "${r.name}" not found`));
    if (req.method === 'GET') return this.send(req, res, 200, current);
    if (r.sub !== 'status' && r.collection !== 'pods') return this.send(req, res, 405, status(405, 'MethodNotAllowed', 'the stand-in only writes the status subresource'));
    let input: unknown;
    try {
      input = await this.body(req);
    } catch (err) {
      return this.send(req, res, 400, status(400, 'BadRequest', `body is not JSON: ${(err as Error).message}`));
    }
    let next: KubeObj;
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    try {
      if (req.method === 'PUT') {
        const given = input as KubeObj;
        if (given.metadata?.resourceVersion && given.metadata.resourceVersion !== current.metadata.resourceVersion) {
          return this.send(req, res, 409, status(409, 'Conflict', 'the object has been modified; please apply your changes to the latest version and try again'));
        }
        next = { ...clone(current), status: clone(given.status) };
      } else if (req.method === 'PATCH') {
        let patched: KubeObj;
        if (type === 'application/json-patch+json') patched = jsonPatch(current, input) as KubeObj;
        else if (type === 'application/merge-patch+json') patched = mergePatch(current, input) as KubeObj;
        else if (type === 'application/strategic-merge-patch+json') patched = mergePatch(current, input, { conditions: 'type' }) as KubeObj;
        else return this.send(req, res, 415, status(415, 'UnsupportedMediaType', `unsupported patch content type ${type}`));
        // The status subresource changes status only.
        next = { ...clone(current), status: patched.status };
      } else return this.send(req, res, 405, status(405, 'MethodNotAllowed', String(req.method)));
    } catch (err) {
      return this.send(req, res, 422, status(422, 'Invalid', (err as Error).message));
    }
    if (JSON.stringify(next.status) !== JSON.stringify(current.status)) this.commit(r.collection, key, next, 'MODIFIED');
    return this.send(req, res, 200, this.objects.get(key));
  }

  private matching(r: { collection: Collection; namespace?: string }, selector: (o: KubeObj) => boolean): KubeObj[] {
    return [...this.objects.entries()]
      .filter(([k, o]) => k.startsWith(`${r.collection}/`) && (!r.namespace || o.metadata.namespace === r.namespace) && selector(o))
      .map(([, o]) => clone(o));
  }

  private list(req: http.IncomingMessage, res: http.ServerResponse, r: { collection: Collection; namespace?: string }, q: URLSearchParams, selector: (o: KubeObj) => boolean): void {
    const asked = q.get('resourceVersion');
    if (asked && q.get('resourceVersionMatch') === 'Exact' && Number(asked) < this.compactedBelow) {
      return this.send(req, res, 410, status(410, 'Expired', `too old resource version: ${asked} (${this.compactedBelow})`));
    }
    const meta = KINDS[r.collection];
    this.send(req, res, 200, {
      apiVersion: meta.apiVersion, kind: `${meta.kind}List`, metadata: { resourceVersion: String(this.rv) },
      items: this.matching(r, selector),
    });
  }

  private watch(req: http.IncomingMessage, res: http.ServerResponse, r: { collection: Collection; namespace?: string }, q: URLSearchParams, selector: (o: KubeObj) => boolean): void {
    if (this.serveFault(req, res, r.collection)) return;
    const from = q.get('resourceVersion');
    const tooOld = from !== null && from !== '' && from !== '0' && Number(from) < this.compactedBelow;
    if (tooOld && this.goneAsHttp) return this.send(req, res, 410, status(410, 'Expired', `too old resource version: ${from} (${this.compactedBelow})`), true);
    this.log(req, 200, true);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (tooOld) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.compactedBelow})`) })}\n`);
      return;
    }
    const w: Watcher = { collection: r.collection, selector, res, bookmarks: q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1', ...(r.namespace ? { namespace: r.namespace } : {}) };
    if (from === null || from === '' || from === '0') {
      for (const o of this.matching(r, selector)) res.write(`${JSON.stringify({ type: 'ADDED', object: o })}\n`);
    } else {
      for (const e of this.history) {
        const line = e.rv > Number(from) ? this.seenAs(e, r.collection, r.namespace, selector) : undefined;
        if (line) res.write(line);
      }
    }
    this.watchers.add(w);
    if (this.bookmarkMs > 0) w.timer = setInterval(() => this.bookmark(w), this.bookmarkMs);
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    if (timeout > 0) setTimeout(() => this.watchers.has(w) && this.endWatch(w), timeout * 1000).unref();
    res.on('close', () => {
      clearInterval(w.timer);
      this.watchers.delete(w);
    });
  }
}

/** One stdin command: what the test process asks the stand-in in the VM. */
export type StandinCommand =
  | { op: 'put'; object: KubeObj }
  | { op: 'get'; collection: Collection; namespace?: string; name: string }
  | { op: 'delete'; collection: Collection; namespace?: string; name: string }
  | { op: 'compact' }
  | { op: 'dropWatches' }
  | { op: 'failNext'; n: number }
  | { op: 'goneAsHttp'; on: boolean }
  | { op: 'bookmarkNow' }
  | { op: 'resetWatches' }
  | { op: 'injectWatchFault'; fault: WatchFault }
  | { op: 'clearFaults' }
  | { op: 'hangLists'; n: number }
  | { op: 'requests'; since?: number }
  | { op: 'info' };

export function runCommand(s: KubeStandin, c: StandinCommand): unknown {
  switch (c.op) {
    case 'put': return s.put(c.object);
    case 'get': return s.get(c.collection, c.namespace, c.name) ?? null;
    case 'delete': return s.delete(c.collection, c.namespace, c.name);
    case 'compact': return s.compact();
    case 'dropWatches': return s.dropWatches();
    case 'failNext': return s.failNext(c.n);
    case 'goneAsHttp': return void (s.goneAsHttp = c.on);
    case 'bookmarkNow': return s.bookmarkNow();
    case 'resetWatches': return s.resetWatches();
    case 'injectWatchFault': return s.injectWatchFault({ ...c.fault, count: c.fault.count ?? Infinity });
    case 'clearFaults': return s.clearFaults();
    case 'hangLists': return s.hangLists(c.n);
    case 'requests': return s.requests.slice(c.since ?? 0);
    case 'info': return { resourceVersion: s.resourceVersion, openWatches: s.openWatches, requests: s.requests.length, heldRequests: s.heldRequests, heldClosed: s.heldClosed };
    default: throw new Error(`unknown op ${JSON.stringify((c as { op: unknown }).op)}`);
  }
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' }, 'bookmark-ms': { type: 'string', default: '1000' } } });
  const standin = new KubeStandin(Number(values['bookmark-ms']));
  const port = await standin.listen(Number(values.port), values.host);
  process.stdout.write(`LISTENING ${port}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let id: unknown = null;
    try {
      const c = JSON.parse(line) as StandinCommand & { id?: unknown };
      id = c.id ?? null;
      process.stdout.write(`${JSON.stringify({ id, ok: true, result: runCommand(standin, c) ?? null })}\n`);
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ id, ok: false, error: (err as Error).message })}\n`);
    }
  });
  lines.on('close', () => {
    void standin.close().then(() => process.exit(0));
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`kube-standin: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
