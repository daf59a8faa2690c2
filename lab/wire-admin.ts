// Client of the wireserver's admin API (a unix socket in the lab state dir,
// reachable from any netns).
import http from 'node:http';
import { LabError } from './errors.js';
import type { WireFault } from './wire-fault.js';
import type { LbHealth } from './lb-prober.js';

export interface WireserverStatus {
  fault: WireFault;
  requests: { total: number; byVm: Record<string, number>; unknownSource: number };
  lb: LbHealth[];
  lbCycles: number;
  lbError: string | null;
}

export function adminRequest(socketPath: string, method: string, urlPath: string, body?: unknown, timeoutMs = 15_000): Promise<WireserverStatus> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { socketPath, method, path: urlPath, timeout: timeoutMs, headers: payload ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } : {} },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (data += chunk));
        res.on('end', () => {
          try {
            const parsed = JSON.parse(data) as WireserverStatus & { error?: string };
            if (res.statusCode !== 200) reject(new LabError(`wireserver admin ${method} ${urlPath}: ${parsed.error ?? res.statusCode}`));
            else resolve(parsed);
          } catch (err) {
            reject(new LabError(`wireserver admin ${method} ${urlPath}: bad answer ${JSON.stringify(data.slice(0, 200))}`, { cause: err }));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new LabError(`wireserver admin ${method} ${urlPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
