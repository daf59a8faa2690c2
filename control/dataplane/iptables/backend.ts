// Which iptables the host uses. Rules written to the other backend are
// invisible to kube-proxy and vice versa, so we follow the host, detected the
// way kube-proxy's iptables-wrapper does: whichever backend already holds
// Kubernetes (or any) rules wins; nft when neither does.
import { run } from '../../exec.js';

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
