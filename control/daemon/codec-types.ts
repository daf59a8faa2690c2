// Types and framing of the daemon protocol, shared by the daemon's protobufjs
// codec (codec.ts) and the plugin's light codec (wire-lite.ts). No dependencies,
// so the plugin process loads no protobuf library.
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
  INVOKE = 9,
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
  /** INVOKE only (sent by the native shim): the raw CNI call. */
  stdin?: Uint8Array;
  env?: Record<string, string>;
  plugin?: string;
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
  /** INVOKE only: the plugin's stdout bytes and exit code. */
  stdout?: Uint8Array;
  exitCode?: number;
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
