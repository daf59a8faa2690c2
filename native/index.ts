// Typed entry to the native addon (native/src). Loaded lazily so CNI calls
// that never touch BPF or locks do not pay for dlopen.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface NativeAddon {
  flock(fd: number, exclusive: boolean, timeoutMs: number): Promise<void>;
  funlock(fd: number): void;
}

let cached: NativeAddon | undefined;

/** Path of the built addon, relative to the repository (dist/native/index.js -> native/build). */
export function addonPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Works from both native/ (ts sources) and dist/native/ (compiled).
  const repoRoot = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
  return process.env.VNET_NATIVE_ADDON ?? path.join(repoRoot, 'native', 'build', 'Release', 'vnet_native.node');
}

export function native(): NativeAddon {
  if (!cached) {
    const require = createRequire(import.meta.url);
    cached = require(addonPath()) as NativeAddon;
  }
  return cached;
}
