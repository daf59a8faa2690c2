// `npm run demo`: a 2-VM simulated VNet, two pods per VM, and a connectivity
// matrix of real TCP connections, then teardown. Pod attachment is pluggable
// (AttachPod); the default is the plain stand-in of attach-plain.ts.
import { pathToFileURL } from 'node:url';
import { Lab } from './lab.js';
import { defaultSpec, WIRESERVER_IP } from './spec.js';
import { plainAttach, type AttachPod, type AttachedPod } from './attach-plain.js';
import { httpGet, startWhoami, tcpWhoamiDetail, type ToolServer } from './tools/net.js';
import { formatTable } from './table.js';

const PORT = 8080;
const WIRE_URL = `http://${WIRESERVER_IP}/machine/plugins?comp=nmagent&type=getinterfaceinfov1`;

interface DemoPod extends AttachedPod {
  vm: string;
  name: string;
}

export interface DemoOptions {
  attach?: AttachPod;
  write?: (text: string) => void;
  /** shown in the header line */
  title?: string;
}

/** Run the demo; resolves with the number of cells that failed (0 = all connected). */
export async function runDemo(options: DemoOptions = {}): Promise<number> {
  const attach = options.attach ?? plainAttach;
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const started = performance.now();
  const lab = await Lab.up(defaultSpec(2, 4));
  const servers: ToolServer[] = [];
  try {
    if (options.title) write(`\n=== ${options.title} ===\n`);
    write(`lab ${lab.prefix} up in ${Math.round(performance.now() - started)} ms: VNet ${lab.subnet}, internet host ${lab.internetIp}, on-prem ${lab.onpremIp}\n`);
    const pods: DemoPod[] = [];
    for (const vm of lab.vmNames) {
      for (const n of [1, 2]) {
        const name = `${vm}-pod${n}`;
        const attached = await attach(lab, vm, `pod${n}`);
        pods.push({ ...attached, vm, name });
        servers.push(await startWhoami(attached.netns, PORT, { name }));
      }
      servers.push(await startWhoami(lab.vmNetns(vm), PORT, { name: vm }));
    }
    servers.push(await startWhoami(lab.internetNs, PORT, { name: 'internet' }), await startWhoami(lab.onpremNs, PORT, { name: 'onprem' }));
    write(formatTable(['pod', 'VM', 'IP', 'netns'], pods.map((p) => [p.name, p.vm, p.ip, p.netns])) + '\n');

    let failures = 0;
    const cell = async (from: DemoPod, ip: string): Promise<string> => {
      try {
        const answer = await tcpWhoamiDetail(from.netns, ip, PORT, { timeoutMs: 2000 });
        return answer.client === from.ip ? 'ok' : `ok as ${answer.client}`;
      } catch {
        failures += 1;
        return 'FAIL';
      }
    };
    const headers = ['from \\ to', ...pods.map((p) => p.name), 'other VM', 'internet', 'on-prem', 'wireserver'];
    const rows: string[][] = [];
    for (const from of pods) {
      const row = [`${from.name} ${from.ip}`];
      for (const to of pods) row.push(to === from ? '-' : await cell(from, to.ip));
      const otherVm = lab.vmNames.find((vm) => vm !== from.vm)!;
      row.push(await cell(from, lab.vmInfo(otherVm).primaryIp));
      row.push(await cell(from, lab.internetIp));
      row.push(await cell(from, lab.onpremIp));
      try {
        const res = await httpGet(from.netns, WIRE_URL, 2000);
        const count = (res.body.match(/<IPAddress /g) ?? []).length;
        row.push(res.status === 200 ? `${res.status}, ${count} IPs` : `HTTP ${res.status}`);
        if (res.status !== 200) failures += 1;
      } catch {
        failures += 1;
        row.push('FAIL');
      }
      rows.push(row);
    }
    write('connectivity (TCP to a whoami server; "ok as X" = the server saw source X):\n');
    write(formatTable(headers, rows));
    write(`\n${failures === 0 ? 'all connected' : `${failures} failed`}; pods reach the internet as their VM's public IP (${lab.vmNames.map((vm) => `${vm} ${lab.vmInfo(vm).publicIp}`).join(', ')})\n`);
    return failures;
  } finally {
    await Promise.allSettled(servers.map((s) => s.stop()));
    await lab.down();
    write(`lab ${lab.prefix} torn down\n`);
  }
}

/** `npm run demo [-- --dataplane iptables|ebpf|both|plain]`: default both, through the real plugin. */
async function main(argv: string[]): Promise<number> {
  const i = argv.indexOf('--dataplane');
  const which = i >= 0 ? argv[i + 1] : 'both';
  if (which === 'plain') return runDemo();
  const { pluginAttach } = await import('./attach-plugin.js');
  const modes = which === 'both' ? (['iptables', 'ebpf'] as const) : ([which] as ['iptables' | 'ebpf']);
  if (!modes.every((m) => m === 'iptables' || m === 'ebpf')) throw new Error(`--dataplane must be iptables, ebpf, both or plain; got ${which}`);
  let failures = 0;
  for (const mode of modes) failures += await runDemo({ attach: pluginAttach(mode), title: `azure-vnet, ${mode} dataplane, pods attached through libcni` });
  return failures;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (failures) => process.exit(failures === 0 ? 0 : 1),
    (err: unknown) => {
      process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
