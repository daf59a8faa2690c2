// Helpers for tap tests that use a lab: bring it up and always tear it down.
import { Lab, type LabUpOptions } from './lab.js';
import type { LabSpec } from './spec.js';
import type { ToolServer } from './tools/net.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

/** Lab.up(spec), with t.teardown(lab.down) registered even before up() returns. */
export async function labForTest(t: Teardownable, spec: LabSpec, options: LabUpOptions = {}): Promise<Lab> {
  const lab = await Lab.up(spec, options);
  t.teardown(() => lab.down());
  return lab;
}

/** Register a started server for teardown and return it. */
export function stopOnTeardown<T extends ToolServer>(t: Teardownable, server: T): T {
  t.teardown(() => server.stop());
  return server;
}
