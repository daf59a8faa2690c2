// The wireserver's getinterfaceinfov1 answer for one VM, in the exact shape
// of /work/shared/VNET-FABRIC.md: MAC upper-case hex without colons, the
// primary address first with IsPrimary="true", then the secondaries.
import type { ResolvedVm } from './spec.js';

export function interfacesXml(subnet: string, vm: ResolvedVm): string {
  const mac = vm.mac.replace(/:/g, '').toUpperCase();
  return [
    '<Interfaces>',
    `  <Interface MacAddress="${mac}" IsPrimary="true">`,
    `    <IPSubnet Prefix="${subnet}">`,
    `      <IPAddress Address="${vm.primaryIp}" IsPrimary="true"/>`,
    ...vm.secondaryIps.map((ip) => `      <IPAddress Address="${ip}" IsPrimary="false"/>`),
    '    </IPSubnet>',
    '  </Interface>',
    '</Interfaces>',
    '',
  ].join('\n');
}
