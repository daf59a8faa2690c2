// Lab safety: on the development and CI machines the plugin must never
// reshape the machine's own network (bridge mode enslaves the NIC). The lab
// marks such machines; there the plugin refuses to run in PID 1's netns.
import { statSync, existsSync } from 'node:fs';
import { UnsafeEnvironmentError } from '../errors.js';

export const LAB_GUARD_FILE = '/run/vnet-cni-lab/.guard';

export function inInitNetns(): boolean {
  try {
    return statSync('/proc/self/ns/net').ino === statSync('/proc/1/ns/net').ino;
  } catch {
    return false;
  }
}

export function assertSafeNetns(): void {
  const guarded = process.env.VNET_CNI_LAB === '1' || existsSync(LAB_GUARD_FILE);
  if (guarded && inInitNetns()) {
    throw new UnsafeEnvironmentError(
      'refusing to run in the machine\'s root network namespace on a lab machine; run the plugin inside a lab VM (vnetctl lab exec <vm> -- ...)',
    );
  }
}
