// The load balancer's health probe, as Azure's: a TCP connect to each
// backend's probe port from 168.63.129.16. Runs in the wireserver process (the
// wire netns owns that address). A backend is taken out after two failed
// probes in a row and put back after one success; the `lb` chain of the
// fabric is rewritten whenever the healthy set changes.
import net from 'node:net';
import { run } from '../control/exec.js';
import { lbScript } from './fabric-nft.js';
import { WIRESERVER_IP, type ResolvedLabSpec } from './spec.js';

export const PROBE_INTERVAL_MS = 1000;
const PROBE_TIMEOUT_MS = 700;
const FAILURES_TO_DOWN = 2;

export interface BackendHealth {
  ip: string;
  healthy: boolean;
  consecutiveFailures: number;
  lastError?: string;
  /** in the fabric's DNAT rule right now (health changes apply within the same probe round) */
  inRotation?: boolean;
}
export interface LbHealth {
  name: string;
  frontend: string;
  port: number;
  probePort: number;
  backends: BackendHealth[];
}

export function probeTcp(ip: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: ip, port, localAddress: WIRESERVER_IP, timeout: timeoutMs });
    const done = (error: string | undefined): void => {
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
      resolve(error);
    };
    socket.once('connect', () => done(undefined));
    socket.once('timeout', () => done(`timeout after ${timeoutMs} ms`));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

export class LbProber {
  private readonly state = new Map<string, BackendHealth>();
  private applied = '';
  /** lb name -> backends in the rules last written to the fabric */
  private rotation = new Map<string, Set<string>>();
  private running: Promise<void> = Promise.resolve();
  cycles = 0;
  lastApplyError: string | undefined;

  constructor(
    private readonly readSpec: () => ResolvedLabSpec,
    private readonly fabricNetns: string,
  ) {}

  /** One probe round (rounds never overlap). */
  cycle(): Promise<void> {
    this.running = this.running.then(() => this.probeAll()).catch((err: unknown) => {
      this.lastApplyError = err instanceof Error ? err.message : String(err);
    });
    return this.running;
  }

  status(): LbHealth[] {
    const spec = this.readSpec();
    return spec.loadBalancers.map((lb) => ({
      name: lb.name,
      frontend: lb.frontend,
      port: lb.port,
      probePort: lb.probePort,
      backends: lb.backends.map((ip) => ({
        ...(this.state.get(key(lb.name, ip, lb.probePort)) ?? { ip, healthy: false, consecutiveFailures: 0 }),
        inRotation: this.rotation.get(lb.name)?.has(ip) ?? false,
      })),
    }));
  }

  private async probeAll(): Promise<void> {
    const spec = this.readSpec();
    const wanted = new Set<string>();
    await Promise.all(
      spec.loadBalancers.flatMap((lb) =>
        lb.backends.map(async (ip) => {
          const k = key(lb.name, ip, lb.probePort);
          wanted.add(k);
          const error = await probeTcp(ip, lb.probePort);
          const previous = this.state.get(k) ?? { ip, healthy: false, consecutiveFailures: 0 };
          const failures = error === undefined ? 0 : previous.consecutiveFailures + 1;
          const next: BackendHealth = { ip, healthy: error === undefined ? true : previous.healthy && failures < FAILURES_TO_DOWN, consecutiveFailures: failures };
          if (error !== undefined) next.lastError = error;
          this.state.set(k, next);
        }),
      ),
    );
    for (const k of this.state.keys()) if (!wanted.has(k)) this.state.delete(k);
    this.cycles += 1;
    const healthy = new Map(this.status().map((lb) => [lb.name, lb.backends.filter((b) => b.healthy).map((b) => b.ip)]));
    const script = lbScript(spec, healthy);
    if (script !== this.applied) {
      const result = await run(['ip', 'netns', 'exec', this.fabricNetns, 'nft', '-f', '-'], { input: script, timeoutMs: 10_000 });
      if (result.code !== 0) throw new Error(`nft (lb chain): ${result.stderr.trim()}`);
      this.applied = script;
      this.lastApplyError = undefined;
    }
    this.rotation = new Map([...healthy].map(([name, ips]) => [name, new Set(ips)]));
  }
}

function key(lb: string, ip: string, port: number): string {
  return `${lb}/${ip}/${port}`;
}
