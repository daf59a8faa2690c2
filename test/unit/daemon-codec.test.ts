// The daemon protocol's two codecs against vnetcni.proto, their source of
// truth: the TypeScript codec's field table (control/daemon/codec.ts SCHEMA)
// and the C shim's field numbers (native/shim/cni-shim.c) must be the .proto's,
// and the TypeScript bytes must be what protobufjs (reading the .proto) makes
// and reads. Plus framing, unknown fields and malformed input.
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { FrameReader, SCHEMA, Verb, decodeRequest, decodeResponse, encodeRequest, encodeResponse, frame, type WireRequest, type WireResponse } from '../../control/daemon/codec.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PROTO_TEXT = readFileSync(path.join(REPO, 'control', 'daemon', 'vnetcni.proto'), 'utf8');
const root = protobuf.parse(PROTO_TEXT).root;
const ns = root.lookup('vnetcni.v1') as protobuf.Namespace;

/** The .proto's messages as { name: { field: { id, type } } }, map fields as 'map<k,v>'. */
function protoMessages(): Record<string, Record<string, { id: number; type: string }>> {
  const out: Record<string, Record<string, { id: number; type: string }>> = {};
  for (const obj of ns.nestedArray) {
    if (!(obj instanceof protobuf.Type)) continue;
    out[obj.name] = Object.fromEntries(
      obj.fieldsArray.map((f) => [f.name, { id: f.id, type: f instanceof protobuf.MapField ? `map<${f.keyType},${f.type}>` : f.type }]),
    );
  }
  return out;
}

t.test('the TypeScript codec has the .proto fields: names, numbers, types', async (t) => {
  t.same(SCHEMA, protoMessages(), 'control/daemon/codec.ts SCHEMA must follow vnetcni.proto');
  const verbs = (ns.lookup('Verb') as protobuf.Enum).values;
  const ts = Object.fromEntries(Object.entries(Verb).filter(([, v]) => typeof v === 'number'));
  t.same(ts, verbs, 'the Verb enum');
});

t.test('the C shim uses the .proto field numbers', async (t) => {
  const c = readFileSync(path.join(REPO, 'native', 'shim', 'cni-shim.c'), 'utf8');
  const defines = [...c.matchAll(/^#define (REQUEST|RESPONSE|ERROR|MAP|VERB)_([A-Z_]+) (\d+)\s*$/gm)].map((m) => ({ msg: m[1]!, field: m[2]!, n: Number(m[3]) }));
  t.ok(defines.length >= 10, `${defines.length} field-number macros found`);
  const messages = protoMessages();
  const verbs = (ns.lookup('Verb') as protobuf.Enum).values;
  const camel = (s: string): string => s.toLowerCase().replace(/_([a-z])/g, (_, x: string) => x.toUpperCase());
  for (const d of defines) {
    const name = `${d.msg}_${d.field}`;
    if (d.msg === 'MAP') t.equal(d.n, d.field === 'KEY' ? 1 : d.field === 'VALUE' ? 2 : -1, `${name}: a map entry's key is 1, value 2`);
    else if (d.msg === 'VERB') t.equal(d.n, verbs[d.field], `${name} is Verb.${d.field}`);
    else {
      const msg = { REQUEST: 'Request', RESPONSE: 'Response', ERROR: 'Error' }[d.msg]!;
      t.equal(d.n, messages[msg]?.[camel(d.field)]?.id, `${name} is ${msg}.${camel(d.field)}`);
    }
  }
  // Every tag the shim writes or matches goes through those names, never a bare number.
  t.same([...c.matchAll(/put_(?:bytes|tag)\([^,]+,\s*\d+/g)].map((m) => m[0]), [], 'no literal field number in an encoder call');
  t.same([...c.matchAll(/field == \d+/g)].map((m) => m[0]), [], 'no literal field number in the decoder');
});

const REQ: WireRequest = {
  clientVersion: '0.1.0-test',
  verb: Verb.INVOKE,
  stdin: Buffer.from('{"cniVersion":"1.0.0"}\n\u0000\xff', 'latin1'),
  env: { CNI_COMMAND: 'ADD', CNI_ARGS: 'a=b;c=d', CNI_IFNAME: 'ü-eth0', CNI_EMPTY: '' },
  plugin: 'azure-vnet-ipam',
};
const RESPONSES: WireResponse[] = [
  { ok: true, resultJson: '', stdout: Buffer.from('{"code":7}\n'), exitCode: 1 },
  { ok: true, resultJson: JSON.stringify({ endpoints: ['x'.repeat(70_000)] }), stdout: Buffer.alloc(0), exitCode: 0 },
  { ok: false, resultJson: '', error: { cniCode: 4294967295, code: 'EX', message: 'ä'.repeat(200), details: 'd' }, stdout: Buffer.alloc(0), exitCode: 0 },
];

t.test('bytes agree with protobufjs in both directions', async (t) => {
  const Request = ns.lookupType('Request');
  const Response = ns.lookupType('Response');
  const asObject = (type: protobuf.Type, buf: Uint8Array): unknown =>
    type.toObject(type.decode(buf), { defaults: true, enums: Number, bytes: Buffer as unknown as StringConstructor });
  const norm = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && (x as { type?: string }).type === 'Buffer' ? Buffer.from((x as { data: number[] }).data).toString('hex') : x)));
  t.same(norm(asObject(Request, encodeRequest(REQ))), norm(REQ), 'protobufjs reads our request');
  t.same(norm(decodeRequest(Request.encode(Request.fromObject(REQ)).finish())), norm(REQ), 'we read protobufjs\'s request');
  for (const res of RESPONSES) {
    const theirs = asObject(Response, encodeResponse(res)) as Record<string, unknown>;
    t.same(norm({ ...theirs, error: theirs.error ?? undefined }), norm(res), `protobufjs reads our response (ok=${res.ok})`);
    t.same(norm(decodeResponse(Response.encode(Response.fromObject(res)).finish())), norm(res), `we read protobufjs's response (ok=${res.ok})`);
  }
});

t.test('frames, defaults, unknown fields and malformed input', async (t) => {
  const reader = new FrameReader();
  const wire = frame(encodeRequest(REQ));
  const frames = [...reader.push(wire.subarray(0, 3)), ...reader.push(wire.subarray(3))];
  t.equal(frames.length, 1, 'one frame from a split write');
  t.same(decodeRequest(frames[0]!), REQ);
  t.same(decodeRequest(Buffer.alloc(0)), { clientVersion: '', verb: 0, stdin: Buffer.alloc(0), env: {}, plugin: '' }, 'an empty message is all defaults');
  t.same(decodeResponse(encodeResponse({ ok: false })), { ok: false, resultJson: '', stdout: Buffer.alloc(0), exitCode: 0 });
  // Fields of the removed per-verb request (3-9) and of a newer peer (15) are skipped.
  const withUnknown = Buffer.concat([encodeResponse({ ok: true, resultJson: '{}' }), Buffer.from([0x7a, 0x02, 0x68, 0x69, 0x78, 0x05])]);
  t.same(decodeResponse(withUnknown), { ok: true, resultJson: '{}', stdout: Buffer.alloc(0), exitCode: 0 }, 'unknown fields 15 (bytes) and 15 (varint) skipped');
  const oldRequest = Buffer.concat([Buffer.from([0x10, 0x01, 0x1a, 0x02, 0x63, 0x31, 0x3a, 0x02, 0x7b, 0x7d])]);
  t.same(decodeRequest(oldRequest), { clientVersion: '', verb: 1, stdin: Buffer.alloc(0), env: {}, plugin: '' }, 'an old per-verb ADD decodes as verb 1 (the server refuses it)');
  t.throws(() => decodeResponse(Buffer.from([0x12, 0x05, 0x61])), /truncated/);
  t.throws(() => decodeResponse(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), /wire type|varint/);
  t.throws(() => decodeRequest(Buffer.from([0x12, 0x01, 0x61])), /field 2 of Request has wire type 2/, 'a known field with the wrong wire type');
  t.throws(() => decodeRequest(Buffer.from([0x5a, 0x02, 0x08, 0x01])), /map entry field 1/, 'a map entry with a non-string key');
  t.throws(() => new FrameReader().push(Buffer.from([0xff, 0xff, 0xff, 0xff])), /exceeds/);
});
