// The in-process Agent over the node's store: what the standalone plugin
// (control/plugin/main.ts) and the daemon (control/daemon/main.ts) run.
//
// createLocalAgent is the one place that wires the Agent's ports (ports.ts)
// to the real store, netlink, process table, pool sources and dataplanes.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { NetConf } from '../../cni/types.js';
import { Agent, type AgentOptions } from './agent.js';
import type { AgentPorts, HostNetwork } from './ports.js';
import { NodeStore } from '../store/node-store.js';
import { linkInfo, ipv4Addrs } from '../netlink/ip.js';
import { createVethPair, configurePodSide, checkPodSide, deleteHostVeth, listHostVeths } from '../netlink/veth.js';
import { createPoolSource } from '../ipam/index.js';
import { createDataplane } from '../dataplane/index.js';
import { assertSafeNetns } from './safety.js';
import { currentOwner, ownerRunning } from './owner.js';
import { seeNetns } from './reclaim.js';

/** The host as the kernel has it: rtnetlink through the native addon, namespaces by path. */
export const kernelHost: HostNetwork = {
  assertSafe: assertSafeNetns,
  linkInfo: (name) => linkInfo(name),
  ipv4Addrs: (dev) => ipv4Addrs(dev),
  createVethPair,
  configurePodSide,
  checkPodSide,
  deleteHostVeth,
  listHostVeths,
  netnsExists: (netns) => existsSync(netns),
  seeNetns: (netns) => seeNetns(netns),
};

/** The real ports for a node whose state lives in `stateDir`. */
export function nodePorts(stateDir: string): AgentPorts {
  return {
    store: new NodeStore(stateDir),
    host: kernelHost,
    processes: { current: currentOwner, running: ownerRunning },
    dataplaneFor: createDataplane,
    poolSource: createPoolSource,
    now: Date.now,
  };
}

export function createLocalAgent(config: Pick<NetConf, 'stateDir'>, logger: Logger, extra: Omit<AgentOptions, 'logger'> = {}): Agent {
  return new Agent(nodePorts(config.stateDir), { logger, ...extra });
}
