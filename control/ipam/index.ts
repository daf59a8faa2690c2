// IPAM's front door: build the pool source the config names, pick the node's
// NIC pool, and the allocator's pure functions over the durable state.
import { InvalidConfigError, PoolSourceError } from '../errors.js';
import type { IpamConfig } from '../types.js';
import { InterfacesFileSource } from './file-source.js';
import { StaticSource } from './static-source.js';
import type { NicPool, PoolSource } from './types.js';
import { DEFAULT_WIRESERVER_URL, WireserverSource } from './wireserver.js';

export * from './types.js';
export * from './allocator.js';
export { selectNic } from './select-nic.js';
export { WireserverSource, DEFAULT_WIRESERVER_URL, interfaceInfoUrl } from './wireserver.js';
export { InterfacesFileSource, DEFAULT_INTERFACES_FILE, parseInterfacesJson } from './file-source.js';
export { StaticSource, staticPool } from './static-source.js';
export { parseInterfacesXml } from './nmagent-xml.js';
export { poolsFromInterfaces } from './interfaces-doc.js';

export const DEFAULT_WIRESERVER_TIMEOUT_MS = 10_000;

/**
 * `kubernetes` without the daemon: the pool lives in the node's
 * NodeNetworkConfig, which only the daemon watches (control/k8s). The plugin
 * never calls the API server itself (no credentials, no client in the
 * binary), so standalone calls fail with a retryable error naming the fix.
 */
export class KubernetesNeedsDaemon implements PoolSource {
  readonly kind = 'kubernetes' as const;
  fetch(): Promise<NicPool[]> {
    return Promise.reject(
      new PoolSourceError(
        'ipam.environment "kubernetes" needs the node daemon (vnetctl daemon --node-name NODE): set "daemonSocket" in the conflist and make sure the daemon runs; the plugin does not read the Kubernetes API itself',
      ),
    );
  }
}

/** The source for `cfg.environment`. Throws InvalidConfigError for a config it cannot use. */
export function createPoolSource(cfg: IpamConfig): PoolSource {
  switch (cfg.environment) {
    case 'azure':
      return new WireserverSource(cfg.wireserverUrl || DEFAULT_WIRESERVER_URL, cfg.wireserverTimeoutMs ?? DEFAULT_WIRESERVER_TIMEOUT_MS);
    case 'fileIpam':
      return new InterfacesFileSource(cfg.interfacesFile || undefined);
    case 'static':
      return new StaticSource(cfg);
    case 'kubernetes':
      return new KubernetesNeedsDaemon();
    default:
      throw new InvalidConfigError(
        `ipam.environment ${JSON.stringify((cfg as { environment: unknown }).environment)} is not one of azure, fileIpam, static, kubernetes`,
      );
  }
}
