// The wireserver (168.63.129.16): the exact XML per VM, found by source IP,
// reread on every request (secondary IPs added and removed), reachable only
// from VMs, and its fault knob.
import t from 'tap';
import { labForTest } from '../../lab/testing.js';
import { defaultSpec } from '../../lab/spec.js';
import { httpGet } from '../../lab/tools/net.js';
import type { Lab } from '../../lab/lab.js';

const URL = 'http://168.63.129.16/machine/plugins?comp=nmagent&type=getinterfaceinfov1';

function xml(mac: string, primary: string, secondaries: string[]): string {
  return [
    '<Interfaces>',
    `  <Interface MacAddress="${mac}" IsPrimary="true">`,
    '    <IPSubnet Prefix="10.240.0.0/16">',
    `      <IPAddress Address="${primary}" IsPrimary="true"/>`,
    ...secondaries.map((ip) => `      <IPAddress Address="${ip}" IsPrimary="false"/>`),
    '    </IPSubnet>',
    '  </Interface>',
    '</Interfaces>',
    '',
  ].join('\n');
}

t.test('wireserver', async (t) => {
  const lab: Lab = await labForTest(t, defaultSpec(2, 2));
  const vm1 = lab.vmNetns('vm1');
  const vm2 = lab.vmNetns('vm2');

  await t.test('answers each VM with its own interfaces (exact XML)', async (t) => {
    const a = await httpGet(vm1, URL);
    t.equal(a.status, 200);
    t.equal(a.body, xml('000D3AF00004', '10.240.0.4', ['10.240.1.4', '10.240.1.5']));
    const b = await httpGet(vm2, URL);
    t.equal(b.body, xml('000D3AF00005', '10.240.0.5', ['10.240.2.4', '10.240.2.5']));
  });

  await t.test('identifies the VM by a secondary IP too', async (t) => {
    // Configure one of vm2's secondaries on its eth0 and ask from it.
    t.equal((await lab.execNs(vm2, ['ip', 'addr', 'add', '10.240.2.5/32', 'dev', 'eth0'])).code, 0);
    t.teardown(() => lab.execNs(vm2, ['ip', 'addr', 'del', '10.240.2.5/32', 'dev', 'eth0']));
    const res = await httpGet(vm2, URL, 3000, { source: '10.240.2.5' });
    t.equal(res.body, xml('000D3AF00005', '10.240.0.5', ['10.240.2.4', '10.240.2.5']));
  });

  await t.test('shows secondary IPs added and removed at once', async (t) => {
    await lab.addSecondaryIp('vm1', '10.240.1.99');
    t.equal((await httpGet(vm1, URL)).body, xml('000D3AF00004', '10.240.0.4', ['10.240.1.4', '10.240.1.5', '10.240.1.99']));
    await lab.removeSecondaryIp('vm1', '10.240.1.4');
    t.equal((await httpGet(vm1, URL)).body, xml('000D3AF00004', '10.240.0.4', ['10.240.1.5', '10.240.1.99']));
    t.same(lab.vmInfo('vm1').secondaryIps, ['10.240.1.5', '10.240.1.99'], 'the API agrees');
    await t.rejects(lab.addSecondaryIp('vm2', '10.240.1.5'), { code: 'ELABSPEC' }, 'an IP of another NIC is refused');
  });

  await t.test('other paths and queries are refused', async (t) => {
    t.equal((await httpGet(vm1, 'http://168.63.129.16/nope')).status, 404);
    t.equal((await httpGet(vm1, 'http://168.63.129.16/machine/plugins?comp=nmagent&type=other')).status, 400);
  });

  await t.test('is reachable only from VMs', async (t) => {
    await t.rejects(httpGet(lab.internetNs, URL, 1500), 'not from the internet host');
    await t.rejects(httpGet(lab.onpremNs, URL, 1500), 'not from on-prem');
  });

  await t.test('counts requests per VM', async (t) => {
    const before = (await lab.wireserverStatus()).requests.byVm.vm2 ?? 0;
    await httpGet(vm2, URL);
    t.equal((await lab.wireserverStatus()).requests.byVm.vm2, before + 1);
  });

  await t.test('fault knob: down, hang, slow, garbage, truncated, error, ok', async (t) => {
    t.teardown(() => lab.setWireserverFault({ mode: 'ok' }));
    await lab.setWireserverFault({ mode: 'down' });
    await t.rejects(httpGet(vm1, URL, 2000), { message: /ECONNREFUSED/ }, 'down: connection refused');

    await lab.setWireserverFault({ mode: 'hang' });
    await t.rejects(httpGet(vm1, URL, 1000), { message: /timeout/ }, 'hang: no answer');

    await lab.setWireserverFault({ mode: 'slow', delayMs: 4000 });
    await t.rejects(httpGet(vm1, URL, 1000), { message: /timeout/ }, 'slow: a short client gives up');
    t.equal((await httpGet(vm1, URL, 10_000)).body, xml('000D3AF00004', '10.240.0.4', ['10.240.1.5', '10.240.1.99']), 'slow: a patient client gets the document');

    await lab.setWireserverFault({ mode: 'garbage' });
    const garbage = await httpGet(vm1, URL);
    t.equal(garbage.status, 200);
    t.notMatch(garbage.body, /<\/Interfaces>/, 'garbage: not the document');

    await lab.setWireserverFault({ mode: 'truncated' });
    const truncated = await httpGet(vm1, URL);
    t.equal(truncated.status, 200);
    t.ok(xml('000D3AF00004', '10.240.0.4', ['10.240.1.5', '10.240.1.99']).startsWith(truncated.body) && truncated.body.length > 0, 'truncated: a prefix of the document');
    t.notMatch(truncated.body, /<\/Interfaces>/);

    await lab.setWireserverFault({ mode: 'error', status: 503 });
    t.equal((await httpGet(vm1, URL)).status, 503);

    await lab.setWireserverFault({ mode: 'ok' });
    t.equal((await httpGet(vm1, URL)).status, 200, 'ok again');
    await t.rejects(lab.setWireserverFault({ mode: 'bogus' } as never), /unknown mode/);
  });
});
