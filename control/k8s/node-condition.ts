// The node's NetworkUnavailable condition, owned by the network plugin:
// False (reason VnetCniReady) while the daemon's dataplane is ready by the
// same test CNI STATUS uses, True with the reason when not. Checked on a
// timer and on demand, patched at start and whenever the answer changes; a
// failed patch is retried on the next check.
import type { Logger } from 'pino';
import { NETWORK_CONDITION } from './constants.js';
import type { NodeCondition } from './kube-api.js';

export interface Readiness {
  ready: boolean;
  /** why not (shown as the condition's message) */
  message: string;
}

export const READY_REASON = 'VnetCniReady';
export const NOT_READY_REASON = 'VnetCniNotReady';

export function conditionOf(r: Readiness, lastTransitionTime: string, now: string): NodeCondition {
  return {
    type: NETWORK_CONDITION,
    status: r.ready ? 'False' : 'True',
    reason: r.ready ? READY_REASON : NOT_READY_REASON,
    message: r.ready ? 'vnet-cni daemon is ready: dataplane and pod pool available' : r.message,
    lastTransitionTime,
    lastHeartbeatTime: now,
  };
}

export interface ConditionReporterOptions {
  check(): Promise<Readiness>;
  patch(condition: NodeCondition): Promise<void>;
  periodMs: number;
  logger: Logger;
}

export class ConditionReporter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** what the node object says now, as far as we know (undefined: not written yet, or the last write failed) */
  private reported: NodeCondition | undefined;
  private transitionAt: string | undefined;
  readonly stats = { checks: 0, patches: 0, failures: 0 };

  constructor(private readonly opts: ConditionReporterOptions) {}

  start(): void {
    // tick() catches its own failures, so poke() never rejects
    void this.poke();
    this.timer = setInterval(() => void this.poke(), this.opts.periodMs);
    this.timer.unref();
  }

  /** Check now (coalesced with a check already running). */
  poke(): Promise<void> {
    this.running ??= this.tick().finally(() => (this.running = undefined));
    return this.running;
  }

  private async tick(): Promise<void> {
    this.stats.checks++;
    let r: Readiness;
    try {
      r = await this.opts.check();
    } catch (err) {
      r = { ready: false, message: `readiness check failed: ${(err as Error).message}` };
    }
    const now = new Date().toISOString();
    const status = r.ready ? 'False' : 'True';
    if (this.reported && this.reported.status === status && this.reported.message === conditionOf(r, '', '').message) return;
    if (!this.reported || this.reported.status !== status) this.transitionAt = now;
    const condition = conditionOf(r, this.transitionAt ?? now, now);
    try {
      await this.opts.patch(condition);
      this.reported = condition;
      this.stats.patches++;
      this.opts.logger.info({ status: condition.status, reason: condition.reason, message: condition.message }, `node condition ${NETWORK_CONDITION} set`);
    } catch (err) {
      this.stats.failures++;
      this.reported = undefined;
      this.opts.logger.warn({ err: (err as Error).message }, `cannot patch node condition ${NETWORK_CONDITION}; retrying on the next check`);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
