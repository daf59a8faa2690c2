// List + watch one collection and keep a local copy of it, the way client-go's
// reflector does: list once, then watch from the list's resourceVersion with
// bookmarks on; after a dropped connection watch again from the last
// resourceVersion seen (so no update is missed or replayed); on 410 Gone
// (history compacted) list again; on errors back off exponentially with jitter.
//
// What counts as a failure (one backoff step) and what as health matters as
// much: a watch ERROR event (a Status other than 410), an HTTP error, a
// request with no response headers in time, and a watch the server closes at
// once with nothing sent are failures; any sign that the stream works (a
// bookmark, a data event, a watch that stayed open past `healthyAfterMs`)
// ends the streak, so routine connection drops spread over a node's life are
// never mistaken for an outage.
import type { Logger } from 'pino';
import { Backoff, DEFAULT_BACKOFF, sleepUnless, type BackoffOptions } from './backoff.js';
import { statusOf, type KubeObject, type ListWatch, type WatchEvent } from './kube-api.js';

export interface ReflectorStats {
  lists: number;
  watches: number;
  /** lists caused by 410 Gone */
  relists410: number;
  errors: number;
  /** consecutive failures now (the backoff step) */
  failures: number;
  /** watch ERROR events other than 410 */
  errorEvents: number;
  /** watches torn down for getting no response headers in time */
  headerTimeouts: number;
  /** watches torn down for outliving timeoutSeconds + margin */
  lifeTimeouts: number;
  lastResourceVersion: string;
  synced: boolean;
  /** ms since the epoch: when the current watch request was sent (undefined between watches) */
  watchSince?: number;
  /** whether the current watch got its response headers */
  watchOpen: boolean;
  /** ms since the epoch of the last watch event (bookmarks included) or list */
  lastEventAt?: number;
}

/** One watch's health, for metrics and `vnetctl debug kubernetes`. */
export interface WatchHealth {
  resource: string;
  describe: string;
  /** 'none' between watches (backing off, listing) */
  state: 'none' | 'connecting' | 'open';
  /** seconds since the current watch request was sent */
  ageSeconds?: number;
  /** seconds since the last event or list */
  lastEventAgoSeconds?: number;
  lastEventAt?: string;
  failures: number;
}

export interface ReflectorTiming {
  /** A watch open this long counts as healthy (ends the failure streak) even if no event came. */
  healthyAfterMs: number;
  /** A watch the server ends sooner than this with no event counts as a failure. */
  closedAtOnceMs: number;
}

export const DEFAULT_REFLECTOR_TIMING: ReflectorTiming = { healthyAfterMs: 30_000, closedAtOnceMs: 1000 };

/** One watch event as applied to the collection (undefined after a list: everything may have changed). */
export interface ReflectorChange<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  key: string;
  object: T;
}

export type ReflectorListener<T> = (items: ReadonlyMap<string, T>, change?: ReflectorChange<T>) => void;

export interface ReflectorOptions<T extends KubeObject> {
  source: ListWatch<T>;
  logger: Logger;
  backoff?: BackoffOptions;
  timing?: Partial<ReflectorTiming>;
  /** Called after each list and after every change, with the whole collection by namespace/name (and the change, for a watch event). */
  onChange?: ReflectorListener<T>;
}

export function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

interface StatusObject {
  code?: unknown;
  reason?: unknown;
  message?: unknown;
  details?: { causes?: Array<{ reason?: unknown }> };
}

/** The Status object of a watch ERROR event says 410 when the resourceVersion is too old. */
function isGone(event: WatchEvent): boolean {
  return (event.object as StatusObject).code === 410;
}

/** "Too large resource version": the server is behind the RV we hold (e.g. restored etcd); only a list gets past it. */
function isTooLarge(event: WatchEvent): boolean {
  const s = event.object as StatusObject;
  return (s.details?.causes ?? []).some((c) => c.reason === 'ResourceVersionTooLarge') || /too large resource version/i.test(text(s.message));
}

/** A Status field as text (they are strings and numbers; anything else is shown as JSON). */
function text(x: unknown): string {
  return typeof x === 'string' || typeof x === 'number' ? String(x) : x === undefined ? '' : JSON.stringify(x);
}

function describeStatus(event: WatchEvent): string {
  const s = event.object as StatusObject;
  return `watch ERROR event: ${text(s.code ?? '?')} ${text(s.reason)} ${text(s.message)}`.trim();
}

export class Reflector<T extends KubeObject> {
  private readonly items = new Map<string, T>();
  private readonly stopper = new AbortController();
  private readonly backoff: Backoff;
  private readonly timing: ReflectorTiming;
  private loop: Promise<void> | undefined;
  readonly stats: ReflectorStats = {
    lists: 0, watches: 0, relists410: 0, errors: 0, failures: 0, errorEvents: 0, headerTimeouts: 0, lifeTimeouts: 0,
    lastResourceVersion: '', synced: false, watchOpen: false,
  };
  private firstSync: { promise: Promise<void>; resolve(): void };
  private readonly listeners = new Set<ReflectorListener<T>>();

  constructor(private readonly opts: ReflectorOptions<T>) {
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF);
    this.timing = { ...DEFAULT_REFLECTOR_TIMING, ...opts.timing };
    let resolve!: () => void;
    this.firstSync = { promise: new Promise<void>((r) => (resolve = r)), resolve };
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Resolves after the first successful list (never rejects; pair it with a timeout if needed). */
  synced(): Promise<void> {
    return this.firstSync.promise;
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
  }

  /** The collection as last seen (namespace/name → object). */
  current(): ReadonlyMap<string, T> {
    return this.items;
  }

  /** Another consumer of the same watch (one watch, several caches). Returns an unsubscribe. */
  subscribe(listener: ReflectorListener<T>): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  health(now = Date.now()): WatchHealth {
    const s = this.stats;
    const seconds = (ms: number): number => Math.max(0, Math.round((now - ms) / 100) / 10);
    return {
      resource: this.opts.source.resource,
      describe: this.opts.source.describe,
      state: s.watchSince === undefined ? 'none' : s.watchOpen ? 'open' : 'connecting',
      ...(s.watchSince !== undefined ? { ageSeconds: seconds(s.watchSince) } : {}),
      ...(s.lastEventAt !== undefined ? { lastEventAgoSeconds: seconds(s.lastEventAt), lastEventAt: new Date(s.lastEventAt).toISOString() } : {}),
      failures: s.failures,
    };
  }

  private get log(): Logger {
    return this.opts.logger;
  }

  private async run(): Promise<void> {
    const stop = this.stopper.signal;
    let rv: string | undefined;
    let fromList = false;
    while (!stop.aborted) {
      if (rv === undefined) {
        try {
          const listed = await this.opts.source.list();
          this.stats.lists++;
          this.items.clear();
          for (const item of listed.items) this.items.set(keyOf(item), item);
          rv = listed.resourceVersion;
          fromList = true;
          this.stats.lastResourceVersion = rv;
          this.stats.lastEventAt = Date.now();
          this.stats.synced = true;
          this.healthy();
          this.changed();
          this.firstSync.resolve();
        } catch (err) {
          await this.failed('list', err);
          continue;
        }
      }
      const outcome = await this.watchOnce(rv);
      if (stop.aborted) break;
      if (outcome.rv !== undefined) rv = outcome.rv;
      const justListed = fromList;
      fromList = false;
      switch (outcome.kind) {
        case 'gone':
          this.stats.relists410++;
          this.log.info({ what: this.opts.source.describe, resourceVersion: rv }, 'watch: resourceVersion too old (410 Gone); listing again');
          // 410 for the RV a list just returned is the server's fault: back off so list + watch cannot spin.
          if (justListed && !outcome.healthy) await this.failed('watch', new Error('410 Gone for the resourceVersion of the list just made'));
          rv = undefined;
          break;
        case 'error-event':
          this.stats.errorEvents++;
          if (outcome.relist) rv = undefined;
          await this.failed('watch', outcome.error);
          break;
        case 'error':
          await this.failed('watch', outcome.error);
          break;
        case 'life':
          this.stats.lifeTimeouts++;
          this.log.info({ what: this.opts.source.describe, resourceVersion: rv }, 'watch outlived timeoutSeconds + margin; torn down, watching again');
          break;
        case 'closed':
          this.log.debug({ what: this.opts.source.describe, resourceVersion: rv }, 'watch closed; resuming');
          break;
      }
    }
  }

  /** One watch request, from its start to its end, whatever ends it. */
  private async watchOnce(from: string): Promise<
    | { kind: 'gone' | 'life' | 'closed'; rv?: string; healthy: boolean }
    | { kind: 'error' | 'error-event'; rv?: string; healthy: boolean; error: unknown; relist?: boolean }
  > {
    const stop = this.stopper.signal;
    // Ends this watch alone (on an ERROR event) without stopping the reflector.
    const ender = new AbortController();
    let rv: string | undefined;
    let healthy = false;
    let gone = false;
    let errorEvent: WatchEvent | undefined;
    let healthyTimer: NodeJS.Timeout | undefined;
    const startedAt = Date.now();
    this.stats.watches++;
    this.stats.watchSince = startedAt;
    this.stats.watchOpen = false;
    const end = await this.opts.source.watch(from, (event) => {
      if (event.type === 'ERROR') {
        // The server ends the stream after an ERROR; end it here too rather than trust it to.
        if (isGone(event)) gone = true;
        else errorEvent ??= event;
        ender.abort();
        return;
      }
      healthy = true;
      this.stats.lastEventAt = Date.now();
      this.healthy();
      const next = event.object.metadata?.resourceVersion;
      if (next) {
        rv = next;
        this.stats.lastResourceVersion = next;
      }
      if (event.type === 'BOOKMARK') return;
      const key = keyOf(event.object);
      const object = event.object as T;
      if (event.type === 'DELETED') this.items.delete(key);
      else this.items.set(key, object);
      this.changed({ type: event.type === 'DELETED' ? 'DELETED' : event.type === 'ADDED' ? 'ADDED' : 'MODIFIED', key, object });
    }, AbortSignal.any([stop, ender.signal]), () => {
      this.stats.watchOpen = true;
      // Open a while without trouble is health too (a quiet collection on a server without bookmarks).
      healthyTimer = setTimeout(() => {
        healthy = true;
        this.healthy();
      }, this.timing.healthyAfterMs);
    });
    clearTimeout(healthyTimer);
    this.stats.watchSince = undefined;
    this.stats.watchOpen = false;
    const base = { ...(rv !== undefined ? { rv } : {}), healthy };
    if (gone || end.statusCode === 410) return { kind: 'gone', ...base };
    if (errorEvent) return { kind: 'error-event', ...base, error: new Error(describeStatus(errorEvent)), relist: isTooLarge(errorEvent) };
    if (end.timedOut === 'life') return { kind: 'life', ...base };
    if (end.error !== undefined) {
      if (end.timedOut === 'headers') this.stats.headerTimeouts++;
      return { kind: 'error', ...base, error: end.error };
    }
    // A server that closes every watch at once, with nothing sent, gets backoff too, not a hot loop.
    if (!healthy && Date.now() - startedAt < this.timing.closedAtOnceMs) return { kind: 'error', ...base, error: new Error('watch closed at once with no events') };
    // The server closed the stream (timeoutSeconds, restart, dropped connection): resume from the last resourceVersion.
    return { kind: 'closed', ...base };
  }

  /** A sign the API works: the failure streak is over. */
  private healthy(): void {
    if (this.backoff.failures > 0) this.log.info({ what: this.opts.source.describe, failures: this.backoff.failures }, 'API healthy again; failure streak reset');
    this.backoff.reset();
    this.stats.failures = 0;
  }

  private async failed(what: 'list' | 'watch', err: unknown): Promise<void> {
    this.stats.errors++;
    const delayMs = this.backoff.next();
    this.stats.failures = this.backoff.failures;
    const fields = { what: this.opts.source.describe, status: statusOf(err), failures: this.backoff.failures, delayMs, err: (err as Error)?.message ?? String(err) };
    if (this.backoff.exhausted) this.log.error(fields, `${what} failing repeatedly; still retrying, backing off`);
    else this.log.warn(fields, `${what} failed; backing off`);
    await sleepUnless(delayMs, this.stopper.signal);
  }

  private changed(change?: ReflectorChange<T>): void {
    for (const listener of [this.opts.onChange, ...this.listeners]) {
      if (!listener) continue;
      try {
        listener(this.items, change);
      } catch (err) {
        this.log.error({ err, what: this.opts.source.describe }, 'change handler failed');
      }
    }
  }
}
