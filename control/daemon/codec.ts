// protobuf encoding of daemon requests and responses, plus the length-prefixed
// framing on the socket. The schema is parsed once per process from the .proto
// text embedded here, so the bundle needs no file at run time.
import protobuf from 'protobufjs';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const MAX_FRAME = 4 * 1024 * 1024;

export enum Verb {
  VERB_UNSPECIFIED = 0,
  ADD = 1,
  DEL = 2,
  CHECK = 3,
  GC = 4,
  STATUS = 5,
  IPAM_ADD = 6,
  IPAM_DEL = 7,
  DUMP = 8,
}

export interface WireRequest {
  clientVersion: string;
  verb: Verb;
  containerId: string;
  netns: string;
  ifName: string;
  args: Record<string, string>;
  configJson: string;
  prevResultJson: string;
  validAttachments: { containerId: string; ifName: string }[];
}

export interface WireError {
  cniCode: number;
  code: string;
  message: string;
  details: string;
}

export interface WireResponse {
  ok: boolean;
  resultJson: string;
  error?: WireError;
}

let types: { Request: protobuf.Type; Response: protobuf.Type } | undefined;

function protoPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/control/daemon -> control/daemon (the .proto is not copied by tsc)
  const candidates = [path.join(here, 'vnetcni.proto'), path.resolve(here, '../../../control/daemon/vnetcni.proto')];
  for (const c of candidates) {
    try {
      readFileSync(c);
      return c;
    } catch {
      /* try next */
    }
  }
  throw new Error('vnetcni.proto not found next to the daemon code');
}

function load(): { Request: protobuf.Type; Response: protobuf.Type } {
  if (!types) {
    const root = protobuf.parse(readFileSync(protoPath(), 'utf8'), { keepCase: false }).root;
    types = { Request: root.lookupType('vnetcni.v1.Request'), Response: root.lookupType('vnetcni.v1.Response') };
  }
  return types;
}

export function encodeRequest(req: WireRequest): Buffer {
  const { Request } = load();
  return Buffer.from(Request.encode(Request.fromObject(req)).finish());
}

export function decodeRequest(buf: Uint8Array): WireRequest {
  const { Request } = load();
  const msg = Request.decode(buf);
  const o = Request.toObject(msg, { defaults: true, enums: Number, arrays: true, objects: true }) as WireRequest;
  return o;
}

export function encodeResponse(res: WireResponse): Buffer {
  const { Response } = load();
  return Buffer.from(Response.encode(Response.fromObject(res)).finish());
}

export function decodeResponse(buf: Uint8Array): WireResponse {
  const { Response } = load();
  return Response.toObject(Response.decode(buf), { defaults: true, enums: Number }) as WireResponse;
}

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
