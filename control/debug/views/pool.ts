// `debug pool`: the IPAM pool summary and who holds which address, with the
// endpoint each allocation belongs to (an allocation without one comes from
// azure-vnet-ipam used alone, or from an ADD that never finished).
import { allocations, poolSummary } from '../../ipam/allocator.js';
import type { Allocation, PoolSummary } from '../../ipam/types.js';
import { endpointKey, type NodeState } from '../../store/node-store.js';
import { renderTable } from '../table.js';

export interface PoolView {
  summary: PoolSummary;
  /** epoch ms of the last successful pool fetch */
  fetchedAt?: string;
  allocations: (Allocation & { endpoint: boolean })[];
}

export function collectPool(state: NodeState): PoolView {
  const view: PoolView = {
    summary: poolSummary(state.ipam),
    allocations: allocations(state.ipam).map((a) => ({ ...a, endpoint: state.endpoints[endpointKey(a.owner.containerId, a.owner.ifName)] !== undefined })),
  };
  if (state.poolFetchedAt !== undefined) view.fetchedAt = new Date(state.poolFetchedAt).toISOString();
  return view;
}

export function poolLine(s: PoolSummary): string {
  return `pool ${s.subnet ?? '(none yet)'}: size ${s.size}, used ${s.used}, free ${s.free}, orphaned ${s.orphaned}`;
}

export function renderPool(v: PoolView): string {
  const s = v.summary;
  let out = `${poolLine(s)}\nNIC ${s.mac ?? '-'} primary ${s.primaryIp ?? '-'} gateway ${s.gateway ?? '-'}; last fetched ${v.fetchedAt ?? 'never'}\n`;
  const rows = v.allocations.map((a) => [a.ip, a.owner.containerId.slice(0, 12), a.owner.ifName, `${a.podNamespace ?? '-'}/${a.podName ?? '-'}`, a.endpoint ? 'yes' : 'no', a.orphaned ? 'ORPHANED' : '']);
  out += renderTable(['IP', 'CONTAINER', 'IFNAME', 'POD', 'ENDPOINT', 'NOTE'], rows);
  return out;
}
