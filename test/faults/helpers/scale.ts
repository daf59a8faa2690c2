// How much work a fault test does, and its reproducible randomness.
// Bounded form (CI, `node scripts/run-tests.mjs faults`): the counts below.
// Full form (`npm run test:faults`, VNET_FAULTS_FULL=1): the larger ones.
// VNET_FAULTS_SEED=<n> replays a run; every test prints the seed it used.

export const FULL = process.env.VNET_FAULTS_FULL === '1';

export function scaled(bounded: number, full: number): number {
  return FULL ? full : bounded;
}

export function seedFromEnv(): number {
  const s = Number(process.env.VNET_FAULTS_SEED);
  return Number.isInteger(s) && s > 0 ? s >>> 0 : (Math.random() * 0xffffffff) >>> 0 || 1;
}

/** mulberry32: small, fast, good enough to drive a fuzzer, and replayable. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let z = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** 0..max picks (repeats allowed). */
  some<T>(items: readonly T[], max: number): T[] {
    return Array.from({ length: this.int(max + 1) }, () => this.pick(items));
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}
