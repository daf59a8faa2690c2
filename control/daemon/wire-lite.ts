// A hand-written proto3 codec for the two messages the plugin process needs:
// it encodes vnetcni.v1.Request and decodes vnetcni.v1.Response. Why not
// protobufjs: a forwarded CNI call is a fresh process, and loading protobufjs
// (~190 KiB of code) is a measurable part of its start-up. The daemon keeps
// the strict protobufjs codec (codec.ts); test/unit/daemon-codec.test.ts checks
// that each side decodes what the other encodes.
import type { WireRequest, WireResponse, WireError } from './codec-types.js';

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

class Writer {
  private readonly parts: Buffer[] = [];
  private varint(n: number): void {
    const bytes: number[] = [];
    let v = n >>> 0 === n ? n : Math.max(0, Math.floor(n));
    while (v > 0x7f) {
      bytes.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    bytes.push(v);
    this.parts.push(Buffer.from(bytes));
  }
  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }
  uint(field: number, n: number): void {
    if (n === 0) return; // proto3 default: not on the wire
    this.tag(field, VARINT);
    this.varint(n);
  }
  bytes(field: number, b: Buffer): void {
    this.tag(field, LEN);
    this.varint(b.length);
    this.parts.push(b);
  }
  string(field: number, s: string): void {
    if (s !== '') this.bytes(field, Buffer.from(s, 'utf8'));
  }
  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export function encodeRequestLite(req: WireRequest): Buffer {
  const w = new Writer();
  w.string(1, req.clientVersion);
  w.uint(2, req.verb);
  w.string(3, req.containerId);
  w.string(4, req.netns);
  w.string(5, req.ifName);
  for (const [k, v] of Object.entries(req.args ?? {})) {
    const entry = new Writer();
    entry.string(1, k);
    entry.string(2, v);
    w.bytes(6, entry.finish());
  }
  w.string(7, req.configJson);
  w.string(8, req.prevResultJson);
  for (const a of req.validAttachments ?? []) {
    const att = new Writer();
    att.string(1, a.containerId);
    att.string(2, a.ifName);
    w.bytes(9, att.finish());
  }
  return w.finish();
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  }
  bytes(): Uint8Array {
    const len = this.varint();
    if (this.pos + len > this.buf.length) throw new Error('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  string(): string {
    return Buffer.from(this.bytes()).toString('utf8');
  }
  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === LEN) this.bytes();
    else if (wireType === FIXED64 || wireType === FIXED32) {
      this.pos += wireType === FIXED64 ? 8 : 4;
      if (this.pos > this.buf.length) throw new Error('truncated fixed field');
    } else throw new Error(`invalid wire type ${wireType}`);
  }
  /** Calls onField(field, wireType) for each field; onField returns false to have it skipped. */
  each(onField: (field: number, wireType: number) => boolean): void {
    while (!this.done) {
      const key = this.varint();
      const field = Math.floor(key / 8);
      const wireType = key & 7;
      if (!onField(field, wireType)) this.skip(wireType);
    }
  }
}

function decodeError(buf: Uint8Array): WireError {
  const e: WireError = { cniCode: 0, code: '', message: '', details: '' };
  const r = new Reader(buf);
  r.each((field, wt) => {
    if (field === 1 && wt === VARINT) e.cniCode = r.varint() >>> 0;
    else if (field === 2 && wt === LEN) e.code = r.string();
    else if (field === 3 && wt === LEN) e.message = r.string();
    else if (field === 4 && wt === LEN) e.details = r.string();
    else return false;
    return true;
  });
  return e;
}

export function decodeResponseLite(buf: Uint8Array): WireResponse {
  const res: WireResponse = { ok: false, resultJson: '' };
  const r = new Reader(buf);
  r.each((field, wt) => {
    if (field === 1 && wt === VARINT) res.ok = r.varint() !== 0;
    else if (field === 2 && wt === LEN) res.resultJson = r.string();
    else if (field === 3 && wt === LEN) res.error = decodeError(r.bytes());
    else return false;
    return true;
  });
  return res;
}
