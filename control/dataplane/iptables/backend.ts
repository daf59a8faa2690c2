// Which iptables the host uses. Rules written to the other backend are
// invisible to kube-proxy and vice versa, so we follow the host, detected the
// way kube-proxy's iptables-wrapper does: whichever backend already holds
// Kubernetes (or any) rules wins; nft when neither does.
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { run } from '../../exec.js';
import { TryAgainError } from '../../errors.js';

/** Seconds iptables waits for the xtables lock (legacy backend; nft takes none) before we answer "try again". */
export const XTABLES_WAIT_S = 5;

/** iptables' complaint when another process held the xtables lock for longer than -w allowed. */
export function xtablesBusy(text: string): boolean {
  return /xtables lock/i.test(text);
}

export function busyError(what: string, detail: string): TryAgainError {
  return new TryAgainError(`${what}: another process held the xtables lock (/run/xtables.lock) for more than ${XTABLES_WAIT_S} s; retry`, { details: detail.trim().slice(0, 500) });
}

/** Is an executable with this name on PATH? Checked here because `command -v` would need a shell. */
export function onPath(tool: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((dir) => {
    try {
      accessSync(path.join(dir, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export type IptablesBackend = 'nft' | 'legacy';

export interface IptablesTools {
  backend: IptablesBackend;
  iptables: string;
  restore: string;
  save: string;
}

function countRules(dump: string): { kube: number; all: number } {
  let kube = 0;
  let all = 0;
  for (const line of dump.split('\n')) {
    if (line.startsWith('-A ') || line.startsWith(':')) {
      if (line.startsWith('-A ')) all += 1;
      if (/KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY|KUBE-/.test(line)) kube += 1;
    }
  }
  return { kube, all };
}

export function toolsFor(backend: IptablesBackend): IptablesTools {
  return {
    backend,
    iptables: `iptables-${backend}`,
    restore: `iptables-${backend}-restore`,
    save: `iptables-${backend}-save`,
  };
}

export async function detectIptablesBackend(override?: IptablesBackend): Promise<IptablesTools> {
  if (override) return toolsFor(override);
  const [legacy, nft] = await Promise.all([
    run(['iptables-legacy-save'], { timeoutMs: 15_000 }).catch(() => undefined),
    run(['iptables-nft-save'], { timeoutMs: 15_000 }).catch(() => undefined),
  ]);
  const l = countRules(legacy?.code === 0 ? legacy.stdout : '');
  const n = countRules(nft?.code === 0 ? nft.stdout : '');
  if (l.kube > n.kube) return toolsFor('legacy');
  if (n.kube > l.kube) return toolsFor('nft');
  return toolsFor(l.all > n.all ? 'legacy' : 'nft');
}
