// The `azure` pool source: ask the wireserver (NMAgent) for this VM's
// interfaces. One GET under a hard total deadline and a response size cap, so
// a down, slow or babbling wireserver costs at most `timeoutMs` and 1 MiB, and
// always ends in a PoolSourceError (CNI code 11: try again later).
import http from 'node:http';
import https from 'node:https';
import { InvalidConfigError, PoolSourceError } from '../errors.js';
import { poolsFromInterfaces } from './interfaces-doc.js';
import { MAX_XML_CHARS, parseInterfacesXml } from './nmagent-xml.js';
import type { NicPool, PoolSource } from './types.js';

export const DEFAULT_WIRESERVER_URL = 'http://168.63.129.16';
export const INTERFACE_INFO_PATH = '/machine/plugins?comp=nmagent&type=getinterfaceinfov1';
export const MAX_WIRESERVER_RESPONSE_BYTES = MAX_XML_CHARS;

/**
 * The full query URL. A bare base ('http://168.63.129.16') gets the standard
 * path appended; a URL with its own path or query is used as given (as the
 * original's queryUrl option was).
 */
export function interfaceInfoUrl(wireserverUrl: string): URL {
  let url: URL;
  try {
    url = new URL(wireserverUrl);
  } catch {
    throw new InvalidConfigError(`ipam.wireserverUrl ${JSON.stringify(wireserverUrl)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidConfigError(`ipam.wireserverUrl ${JSON.stringify(wireserverUrl)} must be http: or https:`);
  }
  return url.pathname === '/' && url.search === '' ? new URL(INTERFACE_INFO_PATH, url) : url;
}

export class WireserverSource implements PoolSource {
  readonly kind = 'azure' as const;
  readonly url: URL;

  constructor(
    wireserverUrl: string,
    readonly timeoutMs: number,
  ) {
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new InvalidConfigError(`ipam.wireserverTimeoutMs must be a positive number, got ${String(timeoutMs)}`);
    }
    this.url = interfaceInfoUrl(wireserverUrl);
  }

  async fetch(signal?: AbortSignal): Promise<NicPool[]> {
    const body = await getText(this.url, this.timeoutMs, signal);
    const origin = `wireserver ${this.url.href}`;
    return poolsFromInterfaces(parseInterfacesXml(body, origin), origin);
  }
}

/** GET url and resolve with the body as UTF-8; every failure is a PoolSourceError naming the URL. */
export function getText(url: URL, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    let settled = false;
    // finish() can run before the request exists (signal already aborted); a const would be read in its TDZ
    // eslint-disable-next-line prefer-const -- assigned once, but read by finish() before that assignment
    let request: http.ClientRequest | undefined;
    const finish = (error: PoolSourceError | undefined, body?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (error) {
        request?.destroy();
        reject(error);
      } else {
        resolve(body!);
      }
    };
    const fail = (what: string, cause?: unknown): void =>
      finish(new PoolSourceError(`wireserver ${url.href}: ${what}`, cause === undefined ? undefined : { cause }));
    const onAbort = (): void => fail('request aborted by the caller');
    const timer = setTimeout(() => fail(`no complete answer within ${timeoutMs} ms`), timeoutMs);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });

    const client = url.protocol === 'https:' ? https : http;
    // agent: false -> a fresh connection per call; nothing lingers after a CNI invocation.
    request = client.request(url, { method: 'GET', agent: false, headers: { accept: 'application/xml, text/xml' } }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        return fail(`HTTP ${response.statusCode ?? '?'} ${response.statusMessage ?? ''}`.trimEnd());
      }
      const declared = Number(response.headers['content-length']);
      if (declared > MAX_WIRESERVER_RESPONSE_BYTES) {
        return fail(`response of ${declared} bytes exceeds the ${MAX_WIRESERVER_RESPONSE_BYTES}-byte limit`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_WIRESERVER_RESPONSE_BYTES) fail(`response exceeds the ${MAX_WIRESERVER_RESPONSE_BYTES}-byte limit`);
        else chunks.push(chunk);
      });
      response.on('error', (err) => fail(`response broke off: ${err.message}`, err));
      response.on('close', () => {
        if (!response.complete) fail('connection closed before the response was complete');
      });
      response.on('end', () => {
        try {
          finish(undefined, new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
        } catch (err) {
          fail('response is not valid UTF-8', err);
        }
      });
    });
    request.on('error', (err) => fail(`request failed: ${err.message}`, err));
    request.end();
  });
}
