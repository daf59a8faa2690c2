// A PolicySource for nodes without Kubernetes (plain Docker, podman): a
// directory of YAML or JSON files holding NetworkPolicy, Namespace and Pod
// objects in the Kubernetes shape (several documents per file, or a List).
//
// Local pods are the endpoints the agent creates, named by CNI_ARGS
// K8S_POD_NAMESPACE / K8S_POD_NAME; their labels and named ports come from a
// Pod object of that namespace/name in the directory (a pod without one has no
// labels). A Pod object with status.podIP makes a pod of another host a peer.
//
// The directory is watched (fs.watch) and rescanned, debounced, on every
// event, and also every `rescanMs` in case the filesystem drops events.
// Partial writes: a half-written file can be valid YAML that means something
// else (cut after `- from:` it allows everything), so a changed file is read
// only once it has not been modified for `settleMs`; until then its previous
// content stays in force. A file that does not parse (a typo) keeps its last
// good content and is reported as a problem until it parses again; one whose
// good content was never seen (new, or since the daemon started) cannot say
// which pods it meant, so it is a broken policy over every pod of the node
// (fail closed) until it parses or is removed. An object in a file that parses
// but cannot be read (unknown kind, no name, ...) is a broken policy over its
// namespace (objects.ts). Writing a temporary file and renaming it over the
// old one is still the best way.
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { objectsFrom, unreadableObject, type PolicyObject } from './objects.js';
import type { NetworkPolicy, PolicyNamespace, PolicyPod, PolicyProblem, PolicySnapshot, PolicySource } from './types.js';

export interface DirectoryPolicySourceOptions {
  dir: string;
  /** Quiet time after a watch event before the rescan; default 100 ms. */
  debounceMs?: number;
  /** Periodic rescan; default 30 s; 0 = none. */
  rescanMs?: number;
  /** A changed file is read once unmodified for this long; default 250 ms. */
  settleMs?: number;
  /** Called with each problem set that differs from the last (for logs). */
  onProblems?: (problems: PolicyProblem[]) => void;
}

const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);
const FUTURE_MTIME_MS = 60_000;

interface FileState {
  /** mtime, size and inode: a rename over the file or an in-place rewrite changes one of them. */
  stamp: string;
  /** Last good parse. */
  objects: PolicyObject[];
  /** Some content of this file has parsed since the source started (else `objects` is not its content). */
  parsed: boolean;
  /** The current content's parse error, if any (objects are then the last good ones). */
  error?: string;
}

/** Files we read: visible, with a policy extension (editors' swap and backup files are skipped). */
export function isPolicyFile(name: string): boolean {
  return !name.startsWith('.') && !name.endsWith('~') && EXTENSIONS.has(path.extname(name).toLowerCase());
}

/**
 * Parse one file's text; throws (js-yaml's error) when it is not YAML or JSON
 * at all. Objects that parse but cannot be read come back as `Unreadable`.
 */
export function parsePolicyFile(text: string, file = 'the file'): PolicyObject[] {
  const docs = yaml.loadAll(text, undefined, { schema: yaml.DEFAULT_SCHEMA });
  return docs.flatMap((d, i) => objectsFrom(d, docs.length > 1 ? `${file}#${i + 1}` : file));
}

export class DirectoryPolicySource implements PolicySource {
  private readonly dir: string;
  private readonly debounceMs: number;
  private readonly rescanMs: number;
  private readonly settleMs: number;
  private settleTimer: NodeJS.Timeout | undefined;
  private readonly files = new Map<string, FileState>();
  private readonly listeners = new Set<() => void>();
  private current: PolicySnapshot | undefined;
  private fingerprint = '';
  private currentProblems: PolicyProblem[] = [];
  private watcher: fs.FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private periodic: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescanAgain = false;
  private stopped = false;

  constructor(private readonly opts: DirectoryPolicySourceOptions) {
    this.dir = path.resolve(opts.dir);
    this.debounceMs = opts.debounceMs ?? 100;
    this.rescanMs = opts.rescanMs ?? 30_000;
    this.settleMs = opts.settleMs ?? 250;
  }

  snapshot(): PolicySnapshot | undefined {
    return this.current;
  }

  /** Problems with the files (unparsable, unknown kinds, duplicates); policy content problems are the compiler's. */
  problems(): PolicyProblem[] {
    return this.currentProblems;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await fs.promises.mkdir(this.dir, { recursive: true });
    this.watcher = fs.watch(this.dir, () => this.schedule());
    // A watcher error (the directory removed) must not crash the daemon: the periodic rescan carries on.
    this.watcher.on('error', () => this.schedule());
    await this.initialScan();
    if (this.rescanMs > 0) {
      this.periodic = setInterval(() => this.schedule(), this.rescanMs);
      this.periodic.unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.debounce) clearTimeout(this.debounce);
    if (this.periodic) clearInterval(this.periodic);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    await this.scanning;
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.rescan();
    }, this.debounceMs);
    this.debounce.unref();
  }

  /** Rescan now (one at a time; a request during a scan runs one more after it). Resolves when the snapshot is current. */
  async rescan(): Promise<void> {
    if (this.scanning) {
      this.rescanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.rescanAgain = false;
          await this.scanOnce();
        } while (this.rescanAgain && !this.stopped);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  /** Read what changed; returns the file names and how long until an unsettled file may be read (Infinity: none). */
  private async scanFiles(settleMs = this.settleMs): Promise<{ names: string[]; settleIn: number }> {
    let names: string[];
    try {
      names = (await fs.promises.readdir(this.dir)).filter(isPolicyFile).sort();
    } catch {
      names = []; // the directory is gone: no policy objects (its files were the policy)
    }
    const seen = new Set(names);
    let settleIn = Infinity;
    for (const name of [...this.files.keys()]) if (!seen.has(name)) this.files.delete(name);
    for (const name of names) {
      const file = path.join(this.dir, name);
      let st: fs.Stats;
      try {
        st = await fs.promises.stat(file);
      } catch {
        this.files.delete(name);
        continue;
      }
      if (!st.isFile()) continue;
      const prev = this.files.get(name);
      const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (prev && prev.stamp === stamp) continue;
      // mtime has sub-millisecond precision and Date.now() not: a file written
      // this very millisecond looks slightly in the future. Only an mtime far
      // ahead (a clock step) is taken as settled, or it would never be read.
      const age = Date.now() - st.mtimeMs;
      if (age > -FUTURE_MTIME_MS && age < settleMs) {
        settleIn = Math.min(settleIn, settleMs - Math.max(0, age));
        continue; // still being written, maybe: look again once it has been quiet
      }
      let text: string;
      try {
        text = await fs.promises.readFile(file, 'utf8');
      } catch {
        continue; // vanished between stat and read: the next event rescans
      }
      try {
        this.files.set(name, { stamp, objects: parsePolicyFile(text, name), parsed: true });
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        this.files.set(name, { stamp, objects: prev?.objects ?? [], parsed: prev?.parsed ?? false, error: message.split('\n')[0]! });
      }
    }
    return { names, settleIn };
  }

  private async scanOnce(): Promise<void> {
    const { names, settleIn } = await this.scanFiles();
    if (settleIn !== Infinity && !this.stopped && !this.settleTimer) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = undefined;
        void this.rescan();
      }, Math.ceil(settleIn) + 5);
    }
    this.publish(names);
  }

  /**
   * The first snapshot waits for every file to settle (a file skipped as
   * unsettled would be a policy missing, i.e. traffic allowed). A file
   * rewritten without pause for 40 settle periods is read as it is.
   */
  private async initialScan(): Promise<void> {
    for (let round = 0; ; round++) {
      const { names, settleIn } = await this.scanFiles();
      if (settleIn === Infinity || round >= 40) {
        if (settleIn !== Infinity) await this.scanFiles(0);
        this.publish(names);
        return;
      }
      await new Promise((r) => setTimeout(r, Math.ceil(settleIn) + 5));
    }
  }

  private publish(names: string[]): void {
    const problems: PolicyProblem[] = [];
    const policies = new Map<string, NetworkPolicy>();
    const namespaces = new Map<string, PolicyNamespace>();
    const pods = new Map<string, PolicyPod>();
    const origin = new Map<string, string>();
    for (const name of names) {
      const f = this.files.get(name);
      if (!f) continue;
      let objects = f.objects;
      if (f.error && f.parsed) {
        problems.push({ policy: name, message: `${f.error}; ${f.objects.length > 0 ? 'its last good content stays in force' : 'its last good content was empty: nothing from it is used'}` });
      } else if (f.error) {
        // Never read whole: which pods it meant is unknown. The compiler reports it (broken, every namespace).
        objects = [unreadableObject('', name, `${name} does not parse (${f.error}) and no earlier content of it is known`)];
      }
      for (const [i, o] of objects.entries()) {
        const key =
          o.kind === 'Unreadable'
            ? `Unreadable ${name}#${i}` // never replaced by another file's object of the same name
            : o.kind === 'NetworkPolicy'
              ? `NetworkPolicy ${o.value.metadata.namespace}/${o.value.metadata.name}`
              : o.kind === 'Namespace'
                ? `Namespace ${o.value.name}`
                : `Pod ${o.value.namespace}/${o.value.name}`;
        const before = origin.get(key);
        if (before !== undefined) problems.push({ policy: name, message: `${key} is also in ${before}; the one in ${name} is used` });
        origin.set(key, name);
        if (o.kind === 'NetworkPolicy' || o.kind === 'Unreadable') policies.set(key, o.value);
        else if (o.kind === 'Namespace') namespaces.set(key, o.value);
        else pods.set(key, o.value);
      }
    }
    const snap: PolicySnapshot = { policies: [...policies.values()], namespaces: [...namespaces.values()], pods: [...pods.values()] };
    const fp = JSON.stringify(snap);
    const problemsChanged = JSON.stringify(problems) !== JSON.stringify(this.currentProblems);
    this.currentProblems = problems;
    if (problemsChanged) this.opts.onProblems?.(problems);
    if (this.current !== undefined && fp === this.fingerprint) return;
    this.fingerprint = fp;
    this.current = snap;
    for (const l of this.listeners) l();
  }
}

export function createDirectoryPolicySource(opts: DirectoryPolicySourceOptions): DirectoryPolicySource {
  return new DirectoryPolicySource(opts);
}
