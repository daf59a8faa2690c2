// Lab safety: on the development and CI machines the plugin must never
// reshape the machine's own network (bridge mode enslaves the NIC). The lab
// marks such machines; there the plugin refuses to run in PID 1's netns.
import { statSync, existsSync } from 'node:fs';
import { UnsafeEnvironmentError } from '../errors.js';

export const LAB_GUARD_FILE = '/run/vnet-cni-lab/.guard';

/** The initial network namespace's inode number is a kernel constant (PROC_NET_INIT_INO, include/linux/proc_ns.h). */
const PROC_NET_INIT_INO = 0xeffffff9;

export function inInitNetns(): boolean {
  const self = statSync('/proc/self/ns/net').ino;
  try {
    return self === statSync('/proc/1/ns/net').ino;
  } catch {
    // Some sandboxes deny reading PID 1's namespace links even to root; the
    // constant still identifies the machine's own namespace.
    return self === PROC_NET_INIT_INO;
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
