// Picks the dataplane implementation for a mode; each is loaded lazily so a
// CNI call in iptables mode never loads the BPF addon.
import type { DataplaneMode } from '../types.js';
import type { Dataplane } from './types.js';

export async function createDataplane(mode: DataplaneMode): Promise<Dataplane> {
  if (mode === 'ebpf') {
    const { EbpfDataplane } = await import('./ebpf/index.js');
    return new EbpfDataplane();
  }
  const { IptablesDataplane } = await import('./iptables/index.js');
  return new IptablesDataplane();
}
