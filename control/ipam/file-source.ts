// The `fileIpam` pool source: the interfaces document as JSON in a local file
// (Azure's fileIpam/MAS format, /etc/kubernetes/interfaces.json by default).
// Keys match case-insensitively and unknown keys are ignored, as Go's
// encoding/json did for the original; values are checked strictly.
import { open } from 'node:fs/promises';
import { PoolSourceError } from '../errors.js';
import { poolsFromInterfaces, type RawAddress, type RawInterface, type RawSubnet } from './interfaces-doc.js';
import type { NicPool, PoolSource } from './types.js';

export const DEFAULT_INTERFACES_FILE = '/etc/kubernetes/interfaces.json';
export const MAX_INTERFACES_FILE_BYTES = 1 << 20;

export class InterfacesFileSource implements PoolSource {
  readonly kind = 'fileIpam' as const;

  constructor(readonly file: string = DEFAULT_INTERFACES_FILE) {}

  async fetch(signal?: AbortSignal): Promise<NicPool[]> {
    if (signal?.aborted) throw new PoolSourceError(`interfaces file ${this.file}: read aborted by the caller`);
    const text = await readBounded(this.file);
    const origin = `interfaces file ${this.file}`;
    return poolsFromInterfaces(parseInterfacesJson(text, origin), origin);
  }
}

async function readBounded(file: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new PoolSourceError(`interfaces file ${file}: cannot open: ${(err as Error).message}`, { cause: err });
  }
  try {
    const buffer = Buffer.alloc(MAX_INTERFACES_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_INTERFACES_FILE_BYTES) {
        throw new PoolSourceError(`interfaces file ${file}: larger than the ${MAX_INTERFACES_FILE_BYTES}-byte limit`);
      }
    }
    return new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, length));
  } catch (err) {
    if (err instanceof PoolSourceError) throw err;
    throw new PoolSourceError(`interfaces file ${file}: cannot read: ${(err as Error).message}`, { cause: err });
  } finally {
    await handle.close();
  }
}

/** `{"Interfaces":[{"MacAddress","IsPrimary","IPSubnets":[{"Prefix","IPAddresses":[{"Address","IsPrimary"}]}]}]}` */
export function parseInterfacesJson(text: string, origin: string): RawInterface[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw new PoolSourceError(`${origin}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const fail = (where: string, what: string): never => {
    throw new PoolSourceError(`${origin}: ${where}: ${what}`);
  };
  const top = asObject(doc, 'document', fail);
  return list(field(top, 'Interfaces'), 'Interfaces', fail).map((entry, i): RawInterface => {
    const where = `Interfaces[${i}]`;
    const nic = asObject(entry, where, fail);
    return {
      macAddress: string(field(nic, 'MacAddress'), `${where}.MacAddress`, fail),
      isPrimary: boolean(field(nic, 'IsPrimary'), `${where}.IsPrimary`, fail),
      subnets: list(field(nic, 'IPSubnets'), `${where}.IPSubnets`, fail).map((s, j): RawSubnet => {
        const at = `${where}.IPSubnets[${j}]`;
        const subnet = asObject(s, at, fail);
        return {
          prefix: string(field(subnet, 'Prefix'), `${at}.Prefix`, fail),
          addresses: list(field(subnet, 'IPAddresses'), `${at}.IPAddresses`, fail).map((a, k): RawAddress => {
            const here = `${at}.IPAddresses[${k}]`;
            const address = asObject(a, here, fail);
            return {
              address: string(field(address, 'Address'), `${here}.Address`, fail),
              isPrimary: boolean(field(address, 'IsPrimary'), `${here}.IsPrimary`, fail),
            };
          }),
        };
      }),
    };
  });
}

type Fail = (where: string, what: string) => never;

/** Exact key first, then a case-insensitive match (Go encoding/json's rule). */
function field(object: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(object, name)) return object[name];
  const lower = name.toLowerCase();
  const key = Object.keys(object).find((k) => k.toLowerCase() === lower);
  return key === undefined ? undefined : object[key];
}

function asObject(value: unknown, where: string, fail: Fail): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(where, 'expected an object');
  return value as Record<string, unknown>;
}

/** Absent or null is an empty list, as in Go. */
function list(value: unknown, where: string, fail: Fail): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail(where, 'expected an array');
  return value;
}

function string(value: unknown, where: string, fail: Fail): string {
  if (typeof value !== 'string') return fail(where, `expected a string, got ${shown(value)}`);
  return value;
}

function boolean(value: unknown, where: string, fail: Fail): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') return fail(where, `expected true or false, got ${shown(value)}`);
  return value;
}

/** A JSON value as it appeared, bounded for the error message. */
function shown(value: unknown): string {
  const text = value === undefined ? 'nothing' : JSON.stringify(value);
  return text.length > 64 ? `${text.slice(0, 64)}...` : text;
}
