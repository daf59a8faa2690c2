// Every key of upstream azure-vnet's NetworkConfig (azure-container-networking
// cni/netconfig.go), with what vnet-cni does with it: honoured, refused (a
// value that selects behaviour vnet-cni does not have fails ADD with code 7,
// naming the key, the value and what is supported), or ignored (informational
// here; the reason is in docs/cni.md). A drop-in plugin must never silently
// do something other than what its conflist asked for.
import { InvalidConfigError } from './errors.js';
import { isObject, shown, type Json } from './validate.js';

export type KeyStatus = 'honoured' | 'refused' | 'ignored';

export interface UpstreamKey {
  key: string;
  status: KeyStatus;
  /** For `refused`: the values that are refused (others are accepted). */
  refuses?: string;
  reason: string;
}

/** The table docs/cni.md shows (test/unit/cni-upstream.test.ts keeps them in step). */
export const UPSTREAM_KEYS: UpstreamKey[] = [
  { key: 'cniVersion', status: 'honoured', reason: 'spec' },
  { key: 'name', status: 'honoured', reason: 'spec' },
  { key: 'type', status: 'honoured', reason: 'spec' },
  { key: 'mode', status: 'honoured', refuses: 'anything but bridge, transparent (transparent-vlan, transparent-tunnel, tunnel)', reason: 'bridge and transparent are built; the others need VLANs/multitenancy or an overlay vnet-cni does not have' },
  { key: 'master', status: 'honoured', reason: 'the host NIC' },
  { key: 'bridge', status: 'honoured', reason: 'bridge name in bridge mode (iptables dataplane)' },
  { key: 'logLevel', status: 'honoured', reason: 'log level of logFile' },
  { key: 'vnetCidrs', status: 'honoured', reason: 'extra prefixes never SNATed' },
  { key: 'ipsToRouteViaHost', status: 'honoured', reason: 'pods reach these IPs through the host stack (node-local DNS)' },
  { key: 'dns', status: 'honoured', reason: 'copied into the result (runtimeConfig.dns wins)' },
  { key: 'runtimeConfig', status: 'honoured', reason: 'dns; portMappings belong to the chained portmap plugin' },
  { key: 'multiTenancy', status: 'refused', refuses: 'true', reason: 'multitenant pods (per-pod VLANs and NCs from CNS) are not built' },
  { key: 'enableSnatOnHost', status: 'refused', refuses: 'true', reason: "multitenancy's SNAT bridge (azSnatbr); vnet-cni SNATs every pod to the primary IP already" },
  { key: 'executionMode', status: 'refused', refuses: 'any non-empty value (v4swift, ...)', reason: 'selects the CNS-driven (swift) flow; vnet-cni has one flow, IPs from the NIC' },
  { key: 'ipv6Mode', status: 'refused', refuses: 'any non-empty value (ipv6nat)', reason: 'vnet-cni is IPv4-only' },
  { key: 'infraVnetAddressSpace', status: 'refused', refuses: 'any non-empty value', reason: 'the infra VNet of multitenancy' },
  { key: 'podNamespaceForDualNetwork', status: 'refused', refuses: 'a non-empty list', reason: 'dual-network pods of multitenancy' },
  { key: 'wireServerIP', status: 'refused', refuses: 'anything but 168.63.129.16', reason: 'another wireserver address; set ipam.wireserverUrl instead' },
  { key: 'adapterName', status: 'ignored', reason: 'Windows only (the HNS adapter); the Linux plugin reads master' },
  { key: 'logTarget', status: 'ignored', reason: "upstream's log sink (syslog/stderr/file); vnet-cni always logs to logFile" },
  { key: 'serviceCidrs', status: 'ignored', reason: 'read upstream only with ipv6Mode (refused); kube-proxy owns the service range' },
  { key: 'enableExactMatchForPodName', status: 'ignored', reason: 'read upstream only with multiTenancy (refused)' },
  { key: 'cnsurl', status: 'ignored', reason: 'the CNS address, read upstream only with ipam.type azure-cns or multiTenancy (both refused)' },
  { key: 'disableHairpinOnHostInterface', status: 'ignored', reason: "vnet-cni never turns hairpin on for the NIC's bridge port (the fabric never needs a frame sent back where it came from): true asks for exactly that, false changes nothing reachable" },
  { key: 'disableIPTableLock', status: 'ignored', reason: 'vnet-cni always waits for the xtables lock (5 s, then code 11)' },
  { key: 'disableAsyncDelete', status: 'ignored', reason: "CNS's asynchronous delete; vnet-cni deletes synchronously" },
  { key: 'windowsSettings', status: 'ignored', reason: 'Windows only' },
  { key: 'AdditionalArgs', status: 'ignored', reason: 'Windows HNS endpoint policies; the Linux plugin does not read them' },
  { key: 'networkMonitor', status: 'ignored', reason: "old conflists' azure-cnms, a separate daemon; vnet-cni's daemon reconciles instead" },
  { key: 'ipam', status: 'honoured', reason: 'the IPAM section (below)' },
  { key: 'ipam.type', status: 'honoured', refuses: "anything but azure-vnet-ipam (azure-cns, host-local, ...)", reason: 'IPAM runs inside the agent from the NIC pool' },
  { key: 'ipam.mode', status: 'refused', refuses: 'any non-empty value (v4overlay, dualStackOverlay, ...)', reason: 'overlay pod CIDRs from CNS are not built; pods get VNet IPs' },
  { key: 'ipam.environment', status: 'honoured', reason: 'the pool source (azure, fileIpam, static, kubernetes; mas refused)' },
  { key: 'ipam.subnet', status: 'honoured', reason: 'the static pool' },
  { key: 'ipam.ipAddress', status: 'refused', refuses: 'any non-empty value', reason: 'a requested address; vnet-cni allocates per container from the pool' },
  { key: 'ipam.addressSpace', status: 'ignored', reason: "upstream's address-space name (LocalDefaultAddressSpace); there is one pool per NIC" },
  { key: 'ipam.queryInterval', status: 'ignored', reason: 'vnet-cni re-reads the pool at most every 30 s on ADD (and the daemon polls)' },
];

/** The two pod shapes vnet-cni builds. */
export const SUPPORTED_MODES = ['bridge', 'transparent'] as const;

function refuse(key: string, value: unknown, why: string, supported: string): InvalidConfigError {
  return new InvalidConfigError(`${key} ${shown(value)} is not supported by vnet-cni: ${why}; ${supported}`);
}

function nonEmpty(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '' && v !== false && !(Array.isArray(v) && v.length === 0);
}

/**
 * Refuse what selects behaviour vnet-cni does not have. `mainPlugin`: the keys only azure-vnet reads
 * (false when azure-vnet-ipam serves another plugin, whose keys they are). Throws InvalidConfigError (code 7).
 */
export function refuseUnsupported(raw: Json, mainPlugin: boolean): void {
  if (mainPlugin) {
    const mode = raw.mode;
    if (mode !== undefined && mode !== null && !(SUPPORTED_MODES as readonly unknown[]).includes(mode)) {
      throw refuse('mode', mode, 'that pod shape is not built', 'use "mode": "bridge" or "transparent"');
    }
    if (raw.multiTenancy === true) {
      throw refuse('multiTenancy', true, 'multitenant pods (VLANs, network containers from CNS) are not built', 'remove the key or set it to false');
    }
    if (raw.enableSnatOnHost === true) {
      throw refuse('enableSnatOnHost', true, "it is multitenancy's SNAT bridge; every pod is SNATed to the primary IP already", 'remove the key or set it to false');
    }
    if (nonEmpty(raw.executionMode)) {
      throw refuse('executionMode', raw.executionMode, 'it selects the CNS-driven flow; vnet-cni takes pod IPs from the NIC (ipam azure-vnet-ipam)', 'remove the key');
    }
    if (nonEmpty(raw.ipv6Mode)) throw refuse('ipv6Mode', raw.ipv6Mode, 'vnet-cni is IPv4-only', 'remove the key');
    if (nonEmpty(raw.infraVnetAddressSpace)) {
      throw refuse('infraVnetAddressSpace', raw.infraVnetAddressSpace, 'the infra VNet belongs to multitenancy, which is not built', 'remove the key');
    }
    if (nonEmpty(raw.podNamespaceForDualNetwork)) {
      throw refuse('podNamespaceForDualNetwork', raw.podNamespaceForDualNetwork, 'dual-network pods belong to multitenancy, which is not built', 'remove the key');
    }
    if (nonEmpty(raw.wireServerIP) && raw.wireServerIP !== '168.63.129.16') {
      throw refuse('wireServerIP', raw.wireServerIP, 'the wireserver address is set in the IPAM section', 'set ipam.wireserverUrl (e.g. "http://10.0.0.1") instead');
    }
  }
  const ipam = raw.ipam;
  if (!isObject(ipam)) return; // absent, or parseNetConf reports the wrong type
  if (typeof ipam.type === 'string' && ipam.type !== '' && ipam.type !== 'azure-vnet-ipam') {
    const why = ipam.type === 'azure-cns' ? 'pod IPs from the Container Networking Service are not built' : 'IPAM runs inside the agent, from the NIC pool';
    throw refuse('ipam.type', ipam.type, why, 'use "ipam": {"type": "azure-vnet-ipam"}');
  }
  if (nonEmpty(ipam.mode)) throw refuse('ipam.mode', ipam.mode, 'overlay pod CIDRs are not built; pods get VNet IPs from the NIC', 'remove the key');
  if (nonEmpty(ipam.ipAddress)) throw refuse('ipam.ipAddress', ipam.ipAddress, 'a requested address is not supported; addresses are allocated per container from the pool', 'remove the key');
}
