// Pick this node's pool out of everything a source listed: the NIC is matched
// by MAC whatever its spelling; a wildcard pool ("*", static) fits any NIC.
import { InvalidConfigError, PoolSourceError } from '../errors.js';
import { quote } from './interfaces-doc.js';
import { normaliseMac } from './ipv4.js';
import { ANY_MAC, type NicPool } from './types.js';

/**
 * The pool for the NIC with `mac`. When one NIC lists several subnets, the one
 * holding the NIC's primary address wins (Azure puts all ipconfigs of a NIC in
 * one subnet, so this is the normal single-subnet case).
 */
export function selectNic(pools: NicPool[], mac: string): NicPool {
  const wanted = normaliseMac(mac);
  if (wanted === undefined) throw new InvalidConfigError(`selectNic: ${quote(mac)} is not a MAC address`);
  let candidates = pools.filter((pool) => pool.mac === wanted);
  if (candidates.length === 0) candidates = pools.filter((pool) => pool.mac === ANY_MAC);
  const chosen = candidates.find((pool) => pool.primaryIp !== '') ?? candidates[0];
  if (chosen === undefined) {
    const seen = [...new Set(pools.map((pool) => pool.mac))];
    throw new PoolSourceError(`no pool for NIC ${wanted}: the source lists ${seen.length ? seen.join(', ') : 'no interfaces'}`);
  }
  return chosen;
}
