// What every view needs, gathered once per `vnetctl debug` run: the control
// plane's state, where the node's pins are, and the interfaces of this netns.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listLinks, type LinkInfo } from '../netlink/ip.js';
import { loadState, type StateSnapshot } from './node-state.js';

export const DEFAULT_BPF_ROOT = '/sys/fs/bpf/vnet-cni';

export interface DebugOptions {
  stateDir: string;
  socket: string;
  /** conflist bpfRoot (pins at <bpfRoot>/<node>) or a node's pin dir itself */
  bpfRoot?: string;
  node?: string;
}

export interface DebugContext {
  snapshot: StateSnapshot;
  /** the node's pin dir (<bpfRoot>/<node>) */
  pinRoot: string;
  /** true if the dataplane's maps are pinned there */
  pinned: boolean;
  links: LinkInfo[];
}

/**
 * --bpf-root wins (a dir holding maps/ is taken as the pin dir itself); else
 * the pin dir the node state records; else the default for this hostname.
 */
export function resolvePinRoot(opts: Pick<DebugOptions, 'bpfRoot' | 'node'>, snapshot: StateSnapshot): string {
  const node = opts.node ?? snapshot.state.node?.config?.nodeName ?? os.hostname();
  if (opts.bpfRoot) return existsSync(path.join(opts.bpfRoot, 'maps')) ? opts.bpfRoot : path.join(opts.bpfRoot, node);
  return snapshot.state.node?.network.bpfRoot ?? path.join(DEFAULT_BPF_ROOT, node);
}

export function mapPin(ctx: Pick<DebugContext, 'pinRoot'>, map: string): string {
  return path.join(ctx.pinRoot, 'maps', map);
}

export async function buildContext(opts: DebugOptions): Promise<DebugContext> {
  const snapshot = await loadState(opts);
  const pinRoot = resolvePinRoot(opts, snapshot);
  const links = await listLinks();
  return { snapshot, pinRoot, pinned: existsSync(path.join(pinRoot, 'maps')), links };
}
