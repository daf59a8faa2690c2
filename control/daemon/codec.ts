// protobuf encoding of daemon requests and responses, plus the length-prefixed
// framing on the socket. The schema comes from a JSON descriptor compiled in
// (codec-schema.ts), so the bundle needs no file and no .proto parser at run time.
import protobuf from 'protobufjs/light.js';
import { VNETCNI_SCHEMA } from './codec-schema.js';

export { MAX_FRAME, Verb, frame, FrameReader, type WireRequest, type WireResponse, type WireError } from './codec-types.js';
import type { WireRequest, WireResponse } from './codec-types.js';

let types: { Request: protobuf.Type; Response: protobuf.Type } | undefined;

function load(): { Request: protobuf.Type; Response: protobuf.Type } {
  if (!types) {
    const root = protobuf.Root.fromJSON(VNETCNI_SCHEMA as unknown as protobuf.INamespace);
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
