// TEST ONLY: the crash and pause points of the fault suites, read from the
// environment of a test entry point (faulty-plugin.ts, faulty-daemon.ts),
// never from the product's binaries. Only in lab VMs (VNET_CNI_LAB=1).
//   VNET_CNI_TEST_CRASH_AT=<point>  kill -9 ourselves there, as the OOM
//                                   killer or a node reboot would
//   VNET_CNI_TEST_PAUSE_AT=<point>  write VNET_CNI_TEST_PAUSE_FILE + '.reached'
//   VNET_CNI_TEST_PAUSE_FILE=<path> and wait (at most 60 s) until that file
//                                   exists, so a test can change the world
//                                   (delete the netns) at a known step
import { existsSync, writeFileSync } from 'node:fs';
import { FAULT_POINTS, type FaultHooks, type FaultPoint } from '../../control/agent/ports.js';

export const CRASH_AT_ENV = 'VNET_CNI_TEST_CRASH_AT';
export const PAUSE_AT_ENV = 'VNET_CNI_TEST_PAUSE_AT';
export const PAUSE_FILE_ENV = 'VNET_CNI_TEST_PAUSE_FILE';

function point(env: NodeJS.ProcessEnv, name: string): FaultPoint | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!(FAULT_POINTS as readonly string[]).includes(v)) throw new Error(`${name}=${v}: not one of ${FAULT_POINTS.join(', ')}`);
  return v as FaultPoint;
}

/** The hooks the environment asks for; undefined when it asks for none. */
export function faultHooksFromEnv(env: NodeJS.ProcessEnv = process.env): FaultHooks | undefined {
  if (env.VNET_CNI_LAB !== '1') return undefined;
  const crashAt = point(env, CRASH_AT_ENV);
  const pauseAt = point(env, PAUSE_AT_ENV);
  const pauseFile = env[PAUSE_FILE_ENV];
  if (!crashAt && !(pauseAt && pauseFile)) return undefined;
  return {
    async at(p) {
      if (p === crashAt) process.kill(process.pid, 'SIGKILL');
      if (p === pauseAt && pauseFile) {
        writeFileSync(`${pauseFile}.reached`, p);
        for (let waited = 0; waited < 60_000 && !existsSync(pauseFile); waited += 50) await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
