// List + watch one collection and keep a local copy of it, the way client-go's
// reflector does: list once, then watch from the list's resourceVersion with
// bookmarks on; after a dropped connection watch again from the last
// resourceVersion seen (so no update is missed or replayed); on 410 Gone
// (history compacted) list again; on errors back off exponentially with jitter.
import type { Logger } from 'pino';
import { Backoff, DEFAULT_BACKOFF, sleepUnless, type BackoffOptions } from './backoff.js';
import { statusOf, type KubeObject, type ListWatch, type WatchEvent } from './kube-api.js';

export interface ReflectorStats {
  lists: number;
  watches: number;
  /** lists caused by 410 Gone */
  relists410: number;
  errors: number;
  /** consecutive failures now */
  failures: number;
  lastResourceVersion: string;
  synced: boolean;
}

export interface ReflectorOptions<T extends KubeObject> {
  source: ListWatch<T>;
  logger: Logger;
  backoff?: BackoffOptions;
  /** Called after the first list and after every change, with the whole collection by namespace/name. */
  onChange(items: ReadonlyMap<string, T>): void;
}

function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

/** The Status object of a watch ERROR event says 410 when the resourceVersion is too old. */
function isGone(event: WatchEvent): boolean {
  const code = (event.object as { code?: unknown }).code;
  return code === 410;
}

export class Reflector<T extends KubeObject> {
  private readonly items = new Map<string, T>();
  private readonly stopper = new AbortController();
  private readonly backoff: Backoff;
  private loop: Promise<void> | undefined;
  readonly stats: ReflectorStats = { lists: 0, watches: 0, relists410: 0, errors: 0, failures: 0, lastResourceVersion: '', synced: false };
  private firstSync: { promise: Promise<void>; resolve(): void };

  constructor(private readonly opts: ReflectorOptions<T>) {
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF);
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

  private get log(): Logger {
    return this.opts.logger;
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let rv: string | undefined;
    while (!signal.aborted) {
      if (rv === undefined) {
        try {
          const listed = await this.opts.source.list();
          this.stats.lists++;
          this.items.clear();
          for (const item of listed.items) this.items.set(keyOf(item), item);
          rv = listed.resourceVersion;
          this.stats.lastResourceVersion = rv;
          this.stats.synced = true;
          this.backoff.reset();
          this.stats.failures = 0;
          this.changed();
          this.firstSync.resolve();
        } catch (err) {
          await this.failed('list', err);
          continue;
        }
      }
      let gone = false;
      let events = 0;
      const startedAt = Date.now();
      this.stats.watches++;
      const end = await this.opts.source.watch(rv, (event) => {
        events++;
        if (event.type === 'ERROR') {
          if (isGone(event)) gone = true;
          else this.log.warn({ status: event.object, what: this.opts.source.describe }, 'watch ERROR event');
          return;
        }
        const next = event.object.metadata?.resourceVersion;
        if (next) {
          rv = next;
          this.stats.lastResourceVersion = next;
        }
        if (event.type === 'BOOKMARK') return;
        if (event.type === 'DELETED') this.items.delete(keyOf(event.object));
        else this.items.set(keyOf(event.object), event.object as T);
        // A stream that delivers events is healthy again.
        this.backoff.reset();
        this.stats.failures = 0;
        this.changed();
      }, signal);
      if (signal.aborted) break;
      if (gone || end.statusCode === 410) {
        this.stats.relists410++;
        this.log.info({ what: this.opts.source.describe, resourceVersion: rv }, 'watch: resourceVersion too old (410 Gone); listing again');
        rv = undefined;
        continue;
      }
      if (end.error !== undefined) {
        await this.failed('watch', end.error);
        continue;
      }
      // A server that closes every watch at once, with nothing sent, gets backoff too, not a hot loop.
      if (events === 0 && Date.now() - startedAt < 1000) {
        await this.failed('watch', new Error('watch closed at once with no events'));
        continue;
      }
      // The server closed the stream (timeoutSeconds, restart, dropped connection): resume from the last resourceVersion.
      this.log.debug({ what: this.opts.source.describe, resourceVersion: rv }, 'watch closed; resuming');
    }
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

  private changed(): void {
    try {
      this.opts.onChange(this.items);
    } catch (err) {
      this.log.error({ err, what: this.opts.source.describe }, 'change handler failed');
    }
  }
}
