// The wireserver's fault knob, for tests of the plugin's failure paths.
import { LabSpecError } from './errors.js';

export type WireFault =
  /** answer normally */
  | { mode: 'ok' }
  /** stop listening: connections are refused */
  | { mode: 'down' }
  /** accept, read the request, never answer */
  | { mode: 'hang' }
  /** answer normally after delayMs */
  | { mode: 'slow'; delayMs: number }
  /** 200 OK with a body that is not the XML document */
  | { mode: 'garbage' }
  /** 200 OK with the first half of the XML document */
  | { mode: 'truncated' }
  /** 200 OK streaming a 4 MiB body (chunked, no Content-Length): a client must cap what it reads */
  | { mode: 'huge' }
  /** 200 OK with elements nested 20 000 deep (under the client's size cap, so its depth cap is what stops it) */
  | { mode: 'nested' }
  /** 200 OK with a DOCTYPE declaring the "billion laughs" entity expansion */
  | { mode: 'entities' }
  /** 200 OK with a well-formed interfaces document for a NIC that is not the caller's */
  | { mode: 'wrong' }
  /** an HTTP error status (default 500) */
  | { mode: 'error'; status: number };

export function parseWireFault(input: unknown): WireFault {
  const raw = (typeof input === 'object' && input !== null ? input : {}) as Record<string, unknown>;
  switch (raw.mode) {
    case 'ok':
    case 'down':
    case 'hang':
    case 'garbage':
    case 'truncated':
    case 'huge':
    case 'nested':
    case 'entities':
    case 'wrong':
      return { mode: raw.mode };
    case 'slow': {
      const delayMs = raw.delayMs;
      if (typeof delayMs !== 'number' || !(delayMs >= 0 && delayMs <= 600_000)) throw new LabSpecError('wireserver fault slow: delayMs must be 0..600000');
      return { mode: 'slow', delayMs };
    }
    case 'error': {
      const status = raw.status ?? 500;
      if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 599) throw new LabSpecError('wireserver fault error: status must be 400..599');
      return { mode: 'error', status };
    }
    default:
      throw new LabSpecError(`wireserver fault: unknown mode ${JSON.stringify(raw.mode)} (ok, down, hang, slow, garbage, truncated, huge, nested, entities, wrong, error)`);
  }
}
