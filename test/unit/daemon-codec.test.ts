// The daemon wire codec: the compiled-in schema matches vnetcni.proto, and
// requests/responses survive a round trip with the exact field values.
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { VNETCNI_SCHEMA } from '../../control/daemon/codec-schema.js';
import { decodeResponseLite, encodeRequestLite } from '../../control/daemon/wire-lite.js';
import { FrameReader, Verb, decodeRequest, decodeResponse, encodeRequest, encodeResponse, frame, type WireRequest, type WireResponse } from '../../control/daemon/codec.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

t.test('codec-schema.ts is vnetcni.proto', async (t) => {
  const proto = readFileSync(path.join(REPO, 'control', 'daemon', 'vnetcni.proto'), 'utf8');
  const parsed = protobuf.parse(proto, { keepCase: false }).root.toJSON();
  t.same(JSON.parse(JSON.stringify(VNETCNI_SCHEMA)), JSON.parse(JSON.stringify(parsed)), 'regenerate codec-schema.ts after changing the .proto');
});

t.test('request and response round trip through frames', async (t) => {
  const req = {
    clientVersion: '0.1.0', verb: Verb.ADD, containerId: 'c1', netns: '/var/run/netns/p', ifName: 'eth0',
    args: { K8S_POD_NAME: 'p' }, configJson: '{"name":"azure"}', prevResultJson: '', validAttachments: [{ containerId: 'c2', ifName: 'eth1' }],
  };
  const reader = new FrameReader();
  const wire = frame(encodeRequest(req));
  const frames = [...reader.push(wire.subarray(0, 3)), ...reader.push(wire.subarray(3))];
  t.equal(frames.length, 1, 'one frame from a split write');
  t.same(decodeRequest(frames[0]!), { ...req, ...INVOKE_DEFAULTS });
  const res = { ok: false, resultJson: '', error: { cniCode: 11, code: 'ETRYAGAIN', message: 'busy', details: 'd' } };
  t.same(decodeResponse(encodeResponse(res)), { ...res, ...INVOKE_RESPONSE_DEFAULTS });
  // INVOKE (the native shim's request): raw stdin bytes, the CNI env, the plugin; stdout bytes and exit code back.
  const invoke = { ...req, verb: Verb.INVOKE, stdin: Buffer.from('{"cniVersion":"1.0.0"}\n\u0000\xff', 'latin1'), env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'a=b;c=d' }, plugin: 'azure-vnet-ipam' };
  t.same(decodeRequest(encodeRequest(invoke)), invoke, 'INVOKE request round trip');
  const out = { ok: true, resultJson: '', stdout: Buffer.from('{"code":7}\n'), exitCode: 1 };
  t.same(decodeResponse(encodeResponse(out)), { ...out, error: null }, 'INVOKE response round trip');
});

/** What the daemon's codec fills in for the INVOKE-only fields of an older request / response. */
const INVOKE_DEFAULTS = { stdin: Buffer.alloc(0), env: {}, plugin: '' };
const INVOKE_RESPONSE_DEFAULTS = { stdout: Buffer.alloc(0), exitCode: 0 };

t.test('the plugin light codec and the daemon protobufjs codec agree', async (t) => {
  const reqs: WireRequest[] = [
    { clientVersion: '0.1.0', verb: Verb.ADD, containerId: 'c'.repeat(300), netns: '/var/run/netns/ü-pod', ifName: 'eth0',
      args: { K8S_POD_NAME: 'p', K8S_POD_NAMESPACE: 'ns', IgnoreUnknown: '1' }, configJson: JSON.stringify({ name: 'azure', big: 'x'.repeat(70_000) }),
      prevResultJson: '{"ips":[]}', validAttachments: [] },
    { clientVersion: '', verb: Verb.GC, containerId: '', netns: '', ifName: '', args: {}, configJson: '{"name":"n"}', prevResultJson: '',
      validAttachments: [{ containerId: 'a', ifName: 'eth0' }, { containerId: 'b', ifName: '' }] },
    { clientVersion: 'v', verb: Verb.VERB_UNSPECIFIED, containerId: '', netns: '', ifName: '', args: {}, configJson: '', prevResultJson: '', validAttachments: [] },
  ];
  for (const req of reqs) t.same(decodeRequest(encodeRequestLite(req)), { ...req, ...INVOKE_DEFAULTS }, `request verb ${req.verb} decodes in the daemon exactly`);
  const responses: WireResponse[] = [
    { ok: true, resultJson: JSON.stringify({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.5/24' }] }) },
    { ok: false, resultJson: '', error: { cniCode: 4294967295, code: 'EX', message: 'ä'.repeat(200), details: '' } },
    { ok: false, resultJson: '' },
  ];
  for (const res of responses) {
    const lite = decodeResponseLite(encodeResponse(res));
    const full = decodeResponse(encodeResponse(res));
    t.same(lite, res, 'the plugin reads the daemon answer exactly');
    t.equal(lite.ok, full.ok);
    t.equal(lite.resultJson, full.resultJson);
    t.same(lite.error ?? null, full.error ?? null);
  }
  // Unknown fields from a newer daemon are skipped; a broken frame is an error, not a wrong answer.
  const withUnknown = Buffer.concat([encodeResponse({ ok: true, resultJson: '{}' }), Buffer.from([0x7a, 0x02, 0x68, 0x69, 0x78, 0x05])]);
  t.same(decodeResponseLite(withUnknown), { ok: true, resultJson: '{}' }, 'unknown fields 15 and 15 (varint) skipped');
  t.throws(() => decodeResponseLite(Buffer.from([0x12, 0x05, 0x61])), /truncated/);
  t.throws(() => decodeResponseLite(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), /wire type|varint/);
});
