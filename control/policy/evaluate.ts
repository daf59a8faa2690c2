// The verdict of a compiled EndpointPolicy for one new flow: what both
// dataplanes must enforce, stated as plainly as possible. Used by the tests
// and by dataplane models (the packet fuzzers); replies of allowed flows and
// the node's own traffic are the dataplanes' business, not this function's.
import { cidrContainsIp, parseIpv4 } from './cidr.js';
import { peerFromCidr } from './normalize.js';
import type { EndpointPolicy, L4Protocol } from './types.js';

export interface PolicyFlow {
  /** ingress: remote → endpoint; egress: endpoint → remote. */
  direction: 'ingress' | 'egress';
  /** The other side's address. */
  remote: string;
  protocol: L4Protocol | 'ICMP';
  /** Destination port (TCP/UDP/SCTP). */
  port?: number;
}

export function policyAllows(ep: EndpointPolicy, flow: PolicyFlow): boolean {
  const dir = flow.direction === 'ingress' ? ep.ingress : ep.egress;
  if (!dir.isolated) return true;
  const ip = parseIpv4(flow.remote);
  if (ip === undefined) return false;
  return dir.rules.some((r) => {
    const peerOk =
      r.peers === null ||
      r.peers.some((p) => {
        const q = peerFromCidr(p);
        return cidrContainsIp(q.cidr, ip) && !q.except.some((e) => cidrContainsIp(e, ip));
      });
    if (!peerOk) return false;
    if (r.ports === null) return true;
    if (flow.protocol === 'ICMP' || flow.port === undefined) return false;
    const port = flow.port;
    return r.ports.some((p) => p.protocol === flow.protocol && port >= p.port && port <= p.endPort);
  });
}
