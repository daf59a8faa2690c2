// The TypeScript codec of the daemon protocol (vnetcni.proto): the messages,
// their framing on the socket, and a small table-driven proto3 encoder and
// decoder. One codec for both ends (the daemon and the Node launcher): the
// field table below is what test/unit/daemon-codec.test.ts compares with
// vnetcni.proto (parsed by protobufjs there), and it cross-checks the bytes
// with protobufjs too. Hand-written rather than protobufjs at run time because
// the Node launcher is a fresh process per CNI call and must start fast.

/** The daemon refuses larger frames (the shim's MAX_FRAME matches). */
export const MAX_FRAME = 4 * 1024 * 1024;

export enum Verb {
  VERB_UNSPECIFIED = 0,
  DUMP = 8,
  INVOKE = 9,
}

export interface WireRequest {
  clientVersion: string;
  verb: Verb;
  /** INVOKE: the raw call. */
  stdin: Uint8Array;
  env: Record<string, string>;
  plugin: string;
}

export interface WireError {
  cniCode: number;
  code: string;
  message: string;
  details: string;
}

export interface WireResponse {
  ok: boolean;
  /** DUMP: the state as JSON. */
  resultJson: string;
  error?: WireError | undefined;
  /** INVOKE: the plugin's stdout bytes and exit code. */
  stdout: Uint8Array;
  exitCode: number;
}

type FieldType = 'string' | 'bytes' | 'bool' | 'uint32' | 'Verb' | 'map<string,string>' | 'Error';
type MessageName = 'Request' | 'Error' | 'Response';

/** Every field of every message: name (as protobufjs camel-cases it), number, type. */
export const SCHEMA: Record<MessageName, Record<string, { id: number; type: FieldType }>> = {
  Request: {
    clientVersion: { id: 1, type: 'string' },
    verb: { id: 2, type: 'Verb' },
    stdin: { id: 10, type: 'bytes' },
    env: { id: 11, type: 'map<string,string>' },
    plugin: { id: 12, type: 'string' },
  },
  Error: {
    cniCode: { id: 1, type: 'uint32' },
    code: { id: 2, type: 'string' },
    message: { id: 3, type: 'string' },
    details: { id: 4, type: 'string' },
  },
  Response: {
    ok: { id: 1, type: 'bool' },
    resultJson: { id: 2, type: 'string' },
    error: { id: 3, type: 'Error' },
    stdout: { id: 4, type: 'bytes' },
    exitCode: { id: 5, type: 'uint32' },
  },
};

const VARINT = 0;
const LEN = 2;

function wireType(type: FieldType): number {
  return type === 'bool' || type === 'uint32' || type === 'Verb' ? VARINT : LEN;
}

// ---- encoding ----

class Writer {
  private readonly parts: Buffer[] = [];
  varint(n: number): void {
    const bytes: number[] = [];
    let v = n >>> 0;
    while (v > 0x7f) {
      bytes.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    bytes.push(v);
    this.parts.push(Buffer.from(bytes));
  }
  len(field: number, b: Uint8Array): void {
    this.varint((field << 3) | LEN);
    this.varint(b.length);
    this.parts.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function encode(name: MessageName, msg: Record<string, unknown>): Buffer {
  const w = new Writer();
  for (const [key, { id, type }] of Object.entries(SCHEMA[name])) {
    const v = msg[key];
    if (v === undefined || v === null) continue;
    switch (type) {
      case 'bool':
      case 'uint32':
      case 'Verb': {
        const n = Number(v);
        if (n === 0) break; // proto3 default: not on the wire
        w.varint((id << 3) | VARINT);
        w.varint(n);
        break;
      }
      case 'string':
        if (v !== '') w.len(id, Buffer.from(v as string, 'utf8'));
        break;
      case 'bytes':
        if ((v as Uint8Array).length > 0) w.len(id, v as Uint8Array);
        break;
      case 'map<string,string>':
        for (const [k, val] of Object.entries(v as Record<string, string>)) {
          const entry = new Writer();
          if (k !== '') entry.len(1, Buffer.from(k, 'utf8'));
          if (val !== '') entry.len(2, Buffer.from(val, 'utf8'));
          w.len(id, entry.finish());
        }
        break;
      case 'Error':
        w.len(id, encode('Error', v as Record<string, unknown>));
        break;
    }
  }
  return w.finish();
}

// ---- decoding: the daemon reads untrusted bytes, so anything malformed throws ----

class Reader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  /** A varint: its low 32 bits exactly (`lo`) and its value (exact below 2^53). */
  varint(): { lo: number; value: number } {
    let lo = 0;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 5) lo = (lo | ((b & 0x7f) << (7 * i))) >>> 0;
      value += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return { lo, value };
    }
    throw new Error('varint longer than 10 bytes');
  }
  bytes(): Uint8Array {
    const len = this.varint().value;
    if (this.pos + len > this.buf.length) throw new Error('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wt: number): void {
    if (wt === VARINT) this.varint();
    else if (wt === LEN) this.bytes();
    else if (wt === 1 || wt === 5) {
      this.pos += wt === 1 ? 8 : 4;
      if (this.pos > this.buf.length) throw new Error('truncated fixed-size field');
    } else throw new Error(`invalid wire type ${wt}`);
  }
}

const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

function defaults(name: MessageName): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, { type }] of Object.entries(SCHEMA[name])) {
    if (type === 'string') out[key] = '';
    else if (type === 'bytes') out[key] = Buffer.alloc(0);
    else if (type === 'bool') out[key] = false;
    else if (type === 'uint32' || type === 'Verb') out[key] = 0;
    else if (type === 'map<string,string>') out[key] = {};
  }
  return out;
}

function decode(name: MessageName, buf: Uint8Array): Record<string, unknown> {
  const byId = new Map(Object.entries(SCHEMA[name]).map(([key, f]) => [f.id, { key, ...f }]));
  const out = defaults(name);
  const r = new Reader(buf);
  while (!r.done) {
    const tag = r.varint().value;
    const id = Math.floor(tag / 8);
    const wt = tag % 8;
    const f = byId.get(id);
    if (f === undefined) {
      r.skip(wt);
      continue;
    }
    if (wt !== wireType(f.type)) throw new Error(`field ${id} of ${name} has wire type ${wt}, want ${wireType(f.type)}`);
    switch (f.type) {
      case 'bool':
        out[f.key] = r.varint().value !== 0;
        break;
      case 'uint32':
        out[f.key] = r.varint().lo;
        break;
      case 'Verb':
        out[f.key] = r.varint().lo | 0; // an enum is an int32
        break;
      case 'string':
        out[f.key] = text(r.bytes());
        break;
      case 'bytes':
        out[f.key] = Buffer.from(r.bytes());
        break;
      case 'map<string,string>': {
        const e = new Reader(r.bytes());
        let k = '';
        let v = '';
        while (!e.done) {
          const etag = e.varint().value;
          const eid = Math.floor(etag / 8);
          const ewt = etag % 8;
          if ((eid === 1 || eid === 2) && ewt !== LEN) throw new Error(`map entry field ${eid} has wire type ${ewt}, want ${LEN}`);
          if (eid === 1) k = text(e.bytes());
          else if (eid === 2) v = text(e.bytes());
          else e.skip(ewt);
        }
        (out[f.key] as Record<string, string>)[k] = v;
        break;
      }
      case 'Error':
        out[f.key] = decode('Error', r.bytes());
        break;
    }
  }
  return out;
}

export function encodeRequest(req: Partial<WireRequest> & Pick<WireRequest, 'verb'>): Buffer {
  return encode('Request', req);
}
export function decodeRequest(buf: Uint8Array): WireRequest {
  return decode('Request', buf) as unknown as WireRequest;
}
export function encodeResponse(res: Partial<WireResponse> & Pick<WireResponse, 'ok'>): Buffer {
  return encode('Response', res);
}
export function decodeResponse(buf: Uint8Array): WireResponse {
  return decode('Response', buf) as unknown as WireResponse;
}

// ---- framing ----

/** Prefix a message with its uint32 big-endian length. */
export function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(payload.length);
  return Buffer.concat([head, payload]);
}

/** Accumulates socket data and yields complete frames; throws on an oversized frame. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buf.length < 4) break;
      const len = this.buf.readUInt32BE(0);
      if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes exceeds the ${MAX_FRAME} byte limit`);
      if (this.buf.length < 4 + len) break;
      out.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }
}
