// The JSON description of one simulated VNet (see /work/shared/VNET-FABRIC.md)
// and its validation. The live copy is vnet.json in the lab's state dir; it is
// always a ResolvedLabSpec (validated, defaults filled in), so every reader
// (the fabric, the wireserver, tests) sees the same complete picture.
import { LabSpecError } from './errors.js';
import { cidrContains, cidrsOverlap, formatIpv4, isIpv4, parseCidr, parseIpv4, type Cidr } from './ipv4.js';

/** The MAC the fabric answers every ARP with and sends every delivered frame from. */
export const FABRIC_MAC = '12:34:56:78:9a:bc';
export const WIRESERVER_IP = '168.63.129.16';
export const DEFAULT_SUBNET = '10.240.0.0/16';
export const DEFAULT_INTERNET_IP = '203.0.113.10';
export const DEFAULT_ONPREM = { prefix: '172.16.1.0/24', ip: '172.16.1.10' } as const;
export const MAX_SECONDARIES_PER_VM = 250;
/** Public IPs defaultSpec hands out (TEST-NET-2, a documentation range). */
export const PUBLIC_IP_RANGE = '198.51.100.0/24';

export type NsgProtocol = 'tcp' | 'udp' | 'icmp' | '*';

/** One network security rule. Lower priority numbers win (Azure: 100..4096). */
export interface NsgRule {
  priority: number;
  direction: 'in' | 'out';
  action: 'allow' | 'deny';
  protocol: NsgProtocol;
  /** source prefix ('10.240.0.0/16'), a single address, or '*' */
  src: string;
  /** destination prefix, a single address, or '*' */
  dst: string;
  /** destination port or inclusive range; tcp, udp or '*' only */
  dstPort?: number | [number, number];
  /** the NIC of one VM, or every NIC in the subnet */
  appliesTo: { vm: string } | 'subnet';
  /** free text, shown in nft comments */
  name?: string;
}

export interface LoadBalancerSpec {
  name: string;
  /** frontend IP: a free VNet address (internal LB) or a public address */
  frontend: string;
  port: number;
  /** backend VNet IPs (VM or pod addresses) */
  backends: string[];
  backendPort: number;
  /** TCP port the health probe connects to; default backendPort */
  probePort?: number;
}

export interface LabVmSpec {
  name: string;
  mac?: string;
  primaryIp: string;
  /** the VM's public IP: outbound SNAT of the primary IP, inbound 1:1 to the primary IP */
  publicIp?: string;
  /** the pod pool: secondary ipconfigs of the NIC */
  secondaryIps: string[];
  /** private secondary IP -> public IP (1:1 inbound) */
  publicIps?: Record<string, string>;
}

export interface LabSpec {
  subnet: string;
  vms: LabVmSpec[];
  internet?: { ip: string };
  onprem?: { prefix: string; ip: string };
  nsg?: NsgRule[];
  loadBalancers?: LoadBalancerSpec[];
}

export interface ResolvedVm extends LabVmSpec {
  mac: string;
  publicIps: Record<string, string>;
}

export interface ResolvedLabSpec extends LabSpec {
  vms: ResolvedVm[];
  internet: { ip: string };
  onprem: { prefix: string; ip: string };
  nsg: NsgRule[];
  loadBalancers: (LoadBalancerSpec & { probePort: number })[];
}

const VM_NAME = /^[a-z][a-z0-9]{0,9}$/;
const RESERVED_VM_NAMES = new Set(['fabric', 'inet', 'onprem', 'wire', 'sink']);
const LB_NAME = /^[a-z][a-z0-9-]{0,30}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Addresses the lab itself uses or that can never be a host. */
const RESERVED_RANGES: [string, Cidr][] = [
  ['0.0.0.0/8', parseCidr('0.0.0.0/8')],
  ['127.0.0.0/8', parseCidr('127.0.0.0/8')],
  ['169.254.0.0/16 (fabric links)', parseCidr('169.254.0.0/16')],
  ['224.0.0.0/3 (multicast/reserved)', parseCidr('224.0.0.0/3')],
  [`${WIRESERVER_IP} (wireserver)`, parseCidr(`${WIRESERVER_IP}/32`)],
];

/** A deterministic, locally unique MAC for a NIC: 00:0d:3a (Azure's OUI) + the IP's low 24 bits. */
export function macForIp(ip: string): string {
  const value = parseIpv4(ip);
  return ['00', '0d', '3a', (value >>> 16) & 255, (value >>> 8) & 255, value & 255]
    .map((part) => (typeof part === 'string' ? part : part.toString(16).padStart(2, '0')))
    .join(':');
}

/**
 * A VNet with `vms` VMs (vm1..vmN) and `podsPerVm` secondary IPs each.
 * vmI gets primary 10.240.0.(3+I), secondaries 10.240.I.4 upwards, public 198.51.100.(10+I).
 */
export function defaultSpec(vms: number, podsPerVm: number): ResolvedLabSpec {
  if (!Number.isInteger(vms) || vms < 1 || vms > 240) throw new LabSpecError(`defaultSpec: vms must be 1..240, got ${vms}`);
  if (!Number.isInteger(podsPerVm) || podsPerVm < 0 || podsPerVm > MAX_SECONDARIES_PER_VM) {
    throw new LabSpecError(`defaultSpec: podsPerVm must be 0..${MAX_SECONDARIES_PER_VM}, got ${podsPerVm}`);
  }
  const spec: LabSpec = { subnet: DEFAULT_SUBNET, vms: [] };
  for (let i = 1; i <= vms; i++) {
    const primaryIp = `10.240.0.${3 + i}`;
    spec.vms.push({
      name: `vm${i}`,
      mac: macForIp(primaryIp),
      primaryIp,
      publicIp: `198.51.100.${10 + i}`,
      secondaryIps: Array.from({ length: podsPerVm }, (_, k) => `10.240.${i}.${4 + k}`),
    });
  }
  return validateSpec(spec);
}

/** Check every rule of a spec and return a complete copy (defaults filled in). Throws LabSpecError. */
export function validateSpec(input: unknown): ResolvedLabSpec {
  return new SpecChecker().check(input);
}

/** Azure usable host addresses: not the network, .1 (gateway), .2/.3 (DNS), nor broadcast. */
export function isUsableHost(subnet: Cidr, ip: number): boolean {
  return cidrContains(subnet, ip) && ip - subnet.network >= 4 && ip !== subnet.network + subnet.size - 1;
}

export function gatewayOf(subnet: string): string {
  return formatIpv4(parseCidr(subnet).network + 1);
}

/** Every IP configured on a VM's NIC, primary first. */
export function nicIps(vm: LabVmSpec): string[] {
  return [vm.primaryIp, ...vm.secondaryIps];
}

/** The VM whose NIC has `ip` (primary or secondary), if any. */
export function vmOwningIp<T extends LabVmSpec>(spec: { vms: T[] }, ip: string): T | undefined {
  return spec.vms.find((vm) => vm.primaryIp === ip || vm.secondaryIps.includes(ip));
}

export function normalizePrefix(text: string, what: string): string {
  if (text === '*') return '*';
  if (isIpv4(text)) return `${text}/32`;
  parseCidr(text, what);
  return text;
}

class SpecChecker {
  /** every NIC address in the VNet -> where it was declared */
  private readonly nicIps = new Map<string, string>();
  private readonly publicIps = new Map<string, string>();

  check(input: unknown): ResolvedLabSpec {
    const raw = object(input, 'spec');
    const subnetText = str(raw.subnet, 'subnet');
    const subnet = parseCidr(subnetText, 'subnet');
    if (subnet.prefixLen < 8 || subnet.prefixLen > 29) throw new LabSpecError(`subnet: /${subnet.prefixLen} is outside /8../29`);
    this.notReserved(subnet, 'subnet');

    const internetRaw = raw.internet === undefined ? { ip: DEFAULT_INTERNET_IP } : object(raw.internet, 'internet');
    const internet = { ip: str(internetRaw.ip, 'internet.ip') };
    const onpremRaw = raw.onprem === undefined ? { ...DEFAULT_ONPREM } : object(raw.onprem, 'onprem');
    const onprem = { prefix: str(onpremRaw.prefix, 'onprem.prefix'), ip: str(onpremRaw.ip, 'onprem.ip') };
    const onpremCidr = parseCidr(onprem.prefix, 'onprem.prefix');
    if (cidrsOverlap(onpremCidr, subnet)) throw new LabSpecError(`onprem.prefix ${onprem.prefix} overlaps the subnet ${subnetText}`);
    this.notReserved(onpremCidr, 'onprem.prefix');
    if (!cidrContains(onpremCidr, parseIpv4(onprem.ip, 'onprem.ip'))) throw new LabSpecError(`onprem.ip ${onprem.ip} is not in onprem.prefix ${onprem.prefix}`);
    const outside = (ip: string, what: string): void => {
      const value = parseIpv4(ip, what);
      this.notReserved({ network: value, prefixLen: 32, size: 1 }, what);
      if (cidrContains(subnet, value)) throw new LabSpecError(`${what}: ${ip} is inside the VNet subnet ${subnetText}`);
      if (cidrContains(onpremCidr, value)) throw new LabSpecError(`${what}: ${ip} is inside the on-prem prefix ${onprem.prefix}`);
    };
    outside(internet.ip, 'internet.ip');
    this.publicIps.set(internet.ip, 'internet.ip');

    const vmsRaw = array(raw.vms, 'vms');
    if (vmsRaw.length === 0) throw new LabSpecError('vms: at least one VM is needed');
    const names = new Set<string>();
    const macs = new Set<string>();
    const vms: ResolvedVm[] = vmsRaw.map((entry, i) => {
      const where = `vms[${i}]`;
      const vm = object(entry, where);
      const name = str(vm.name, `${where}.name`);
      if (!VM_NAME.test(name) || RESERVED_VM_NAMES.has(name)) {
        throw new LabSpecError(`${where}.name: '${name}' must match ${VM_NAME} and not be one of ${[...RESERVED_VM_NAMES].join(', ')}`);
      }
      if (names.has(name)) throw new LabSpecError(`${where}.name: duplicate VM name '${name}'`);
      names.add(name);
      const primaryIp = this.nicIp(subnet, vm.primaryIp, `${where}.primaryIp`);
      const secondaries = array(vm.secondaryIps ?? [], `${where}.secondaryIps`);
      if (secondaries.length > MAX_SECONDARIES_PER_VM) {
        throw new LabSpecError(`${where}.secondaryIps: ${secondaries.length} addresses, at most ${MAX_SECONDARIES_PER_VM} per NIC`);
      }
      const secondaryIps = secondaries.map((ip, k) => this.nicIp(subnet, ip, `${where}.secondaryIps[${k}]`));
      const mac = vm.mac === undefined ? macForIp(primaryIp) : str(vm.mac, `${where}.mac`).toLowerCase();
      if (!MAC.test(mac)) throw new LabSpecError(`${where}.mac: '${mac}' is not a MAC like 00:0d:3a:00:00:04`);
      if (parseInt(mac.slice(0, 2), 16) & 1) throw new LabSpecError(`${where}.mac: ${mac} is a multicast MAC`);
      if (mac === FABRIC_MAC || mac === '00:00:00:00:00:00') throw new LabSpecError(`${where}.mac: ${mac} is reserved`);
      if (macs.has(mac)) throw new LabSpecError(`${where}.mac: duplicate MAC ${mac}`);
      macs.add(mac);
      const resolved: ResolvedVm = { name, mac, primaryIp, secondaryIps, publicIps: {} };
      if (vm.publicIp !== undefined) resolved.publicIp = this.publicIp(vm.publicIp, `${where}.publicIp`, outside);
      const publicIps = vm.publicIps === undefined ? {} : object(vm.publicIps, `${where}.publicIps`);
      for (const [privateIp, pub] of Object.entries(publicIps)) {
        const what = `${where}.publicIps['${privateIp}']`;
        if (privateIp === primaryIp) throw new LabSpecError(`${what}: the primary IP's public address is set with publicIp`);
        if (!secondaryIps.includes(privateIp)) throw new LabSpecError(`${what}: ${privateIp} is not a secondary IP of ${name}`);
        resolved.publicIps[privateIp] = this.publicIp(pub, what, outside);
      }
      return resolved;
    });

    const nsg = array(raw.nsg ?? [], 'nsg').map((rule, i) => checkNsgRule(rule, `nsg[${i}]`, names));
    const seenPriority = new Set<string>();
    for (const rule of nsg) {
      const key = `${scopeKey(rule)}/${rule.direction}/${rule.priority}`;
      if (seenPriority.has(key)) throw new LabSpecError(`nsg: two ${rule.direction} rules for ${scopeKey(rule)} share priority ${rule.priority}`);
      seenPriority.add(key);
    }

    const lbNames = new Set<string>();
    const frontends = new Set<string>();
    const loadBalancers = array(raw.loadBalancers ?? [], 'loadBalancers').map((entry, i) => {
      const where = `loadBalancers[${i}]`;
      const lb = object(entry, where);
      const name = str(lb.name, `${where}.name`);
      if (!LB_NAME.test(name)) throw new LabSpecError(`${where}.name: '${name}' must match ${LB_NAME}`);
      if (lbNames.has(name)) throw new LabSpecError(`${where}.name: duplicate load balancer '${name}'`);
      lbNames.add(name);
      const frontend = str(lb.frontend, `${where}.frontend`);
      const fe = parseIpv4(frontend, `${where}.frontend`);
      if (cidrContains(subnet, fe)) {
        if (!isUsableHost(subnet, fe)) throw new LabSpecError(`${where}.frontend: ${frontend} is a reserved subnet address`);
        if (this.nicIps.has(frontend)) throw new LabSpecError(`${where}.frontend: ${frontend} is configured on a NIC (${this.nicIps.get(frontend)})`);
      } else {
        outside(frontend, `${where}.frontend`);
        const owner = this.publicIps.get(frontend);
        if (owner !== undefined) throw new LabSpecError(`${where}.frontend: ${frontend} is already used by ${owner}`);
      }
      const port = portNumber(lb.port, `${where}.port`);
      if (frontends.has(`${frontend}:${port}`)) throw new LabSpecError(`${where}: frontend ${frontend}:${port} is used twice`);
      frontends.add(`${frontend}:${port}`);
      const backends = array(lb.backends, `${where}.backends`).map((ip, k) => {
        const text = str(ip, `${where}.backends[${k}]`);
        if (!cidrContains(subnet, parseIpv4(text, `${where}.backends[${k}]`))) throw new LabSpecError(`${where}.backends[${k}]: ${text} is not a VNet address`);
        return text;
      });
      if (backends.length === 0) throw new LabSpecError(`${where}.backends: at least one backend is needed`);
      if (new Set(backends).size !== backends.length) throw new LabSpecError(`${where}.backends: duplicate backend`);
      const backendPort = portNumber(lb.backendPort, `${where}.backendPort`);
      const probePort = lb.probePort === undefined ? backendPort : portNumber(lb.probePort, `${where}.probePort`);
      return { name, frontend, port, backends, backendPort, probePort };
    });

    return { subnet: subnetText, vms, internet, onprem, nsg, loadBalancers };
  }

  private nicIp(subnet: Cidr, value: unknown, what: string): string {
    const ip = str(value, what);
    if (!isUsableHost(subnet, parseIpv4(ip, what))) {
      throw new LabSpecError(`${what}: ${ip} is not a usable host address of the subnet (Azure reserves the first four and the last)`);
    }
    const previous = this.nicIps.get(ip);
    if (previous !== undefined) throw new LabSpecError(`${what}: ${ip} is already configured at ${previous}`);
    this.nicIps.set(ip, what);
    return ip;
  }

  private publicIp(value: unknown, what: string, outside: (ip: string, what: string) => void): string {
    const ip = str(value, what);
    outside(ip, what);
    const previous = this.publicIps.get(ip);
    if (previous !== undefined) throw new LabSpecError(`${what}: public IP ${ip} is already used by ${previous}`);
    this.publicIps.set(ip, what);
    return ip;
  }

  private notReserved(cidr: Cidr, what: string): void {
    for (const [label, reserved] of RESERVED_RANGES) {
      if (cidrsOverlap(cidr, reserved)) throw new LabSpecError(`${what} overlaps ${label}, which the lab reserves`);
    }
  }
}

function scopeKey(rule: NsgRule): string {
  return rule.appliesTo === 'subnet' ? 'subnet' : `vm ${rule.appliesTo.vm}`;
}

function checkNsgRule(input: unknown, where: string, vmNames: Set<string>): NsgRule {
  const raw = object(input, where);
  const priority = raw.priority;
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 100 || priority > 4096) {
    throw new LabSpecError(`${where}.priority: must be an integer 100..4096`);
  }
  const direction = oneOf(raw.direction, ['in', 'out'] as const, `${where}.direction`);
  const action = oneOf(raw.action, ['allow', 'deny'] as const, `${where}.action`);
  const protocol = oneOf(raw.protocol, ['tcp', 'udp', 'icmp', '*'] as const, `${where}.protocol`);
  const src = normalizePrefix(str(raw.src, `${where}.src`), `${where}.src`);
  const dst = normalizePrefix(str(raw.dst, `${where}.dst`), `${where}.dst`);
  let appliesTo: NsgRule['appliesTo'];
  if (raw.appliesTo === 'subnet') appliesTo = 'subnet';
  else {
    const target = object(raw.appliesTo, `${where}.appliesTo`);
    const vm = str(target.vm, `${where}.appliesTo.vm`);
    if (!vmNames.has(vm)) throw new LabSpecError(`${where}.appliesTo.vm: no VM named '${vm}'`);
    appliesTo = { vm };
  }
  const rule: NsgRule = { priority, direction, action, protocol, src, dst, appliesTo };
  if (raw.name !== undefined) rule.name = str(raw.name, `${where}.name`).slice(0, 64);
  if (raw.dstPort !== undefined) {
    if (protocol === 'icmp') throw new LabSpecError(`${where}.dstPort: icmp has no ports`);
    if (Array.isArray(raw.dstPort)) {
      const [lo, hi, extra] = raw.dstPort as unknown[];
      const range: [number, number] = [portNumber(lo, `${where}.dstPort[0]`), portNumber(hi, `${where}.dstPort[1]`)];
      if (extra !== undefined || range[0] > range[1]) throw new LabSpecError(`${where}.dstPort: expected [low, high]`);
      rule.dstPort = range;
    } else {
      rule.dstPort = portNumber(raw.dstPort, `${where}.dstPort`);
    }
  }
  return rule;
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LabSpecError(`${what}: expected an object`);
  return value as Record<string, unknown>;
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new LabSpecError(`${what}: expected an array`);
  return value;
}

function str(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new LabSpecError(`${what}: expected a non-empty string`);
  return value;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new LabSpecError(`${what}: expected one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  }
  return value as T;
}

function portNumber(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) throw new LabSpecError(`${what}: expected a port 1..65535`);
  return value;
}
