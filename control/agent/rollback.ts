// An undo stack for ADD: each undo is registered right after its resource
// is acquired and runs, newest first, if a later step fails. Undo errors are
// logged; the original error is the one the caller sees.
import type { Logger } from 'pino';

export class Rollback {
  private readonly undos: { what: string; fn: () => Promise<unknown> }[] = [];
  constructor(private readonly log: Logger) {}

  push(what: string, fn: () => Promise<unknown>): void {
    this.undos.push({ what, fn });
  }

  async run(): Promise<void> {
    while (this.undos.length) {
      const { what, fn } = this.undos.pop()!;
      try {
        await fn();
      } catch (err) {
        this.log.warn({ err, undo: what }, 'rollback step failed');
      }
    }
  }
}
