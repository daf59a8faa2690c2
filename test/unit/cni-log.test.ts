// control/log.ts: JSON lines appended synchronously to the configured file
// (so a SIGKILLed plugin loses nothing), newlines in values cannot forge a
// line, and an unopenable file falls back to stderr, never stdout.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { run } from '../../control/exec.js';
import { createLogger } from '../../control/log.js';
import { REPO_ROOT, tempDir } from './cni-helpers.js';

const LOG_MODULE = pathToFileURL(path.join(REPO_ROOT, 'dist', 'control', 'log.js')).href;

function lines(file: string): Array<Record<string, unknown>> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

t.test('JSON lines, appended synchronously, in a directory created on demand', async (t) => {
  const dir = tempDir(t, 'log');
  const file = path.join(dir, 'nested', 'deeper', 'azure-vnet.log');
  const logger = createLogger({ file, level: 'info', name: 'azure-vnet', base: { plugin: 'azure-vnet' } });
  logger.info({ containerId: 'c1' }, 'first');
  t.equal(lines(file).length, 1, 'the line is on disk as soon as info() returns');
  logger.debug('hidden at info');
  logger.warn('second');
  const got = lines(file);
  t.equal(got.length, 2, 'debug filtered at level info');
  t.match(got[0], { level: 30, name: 'azure-vnet', plugin: 'azure-vnet', containerId: 'c1', msg: 'first', pid: process.pid });
  t.match(got[0]!.time, /^\d{4}-\d\d-\d\dT/, 'ISO time');
  const again = createLogger({ file, name: 'azure-vnet' });
  again.info('third');
  t.equal(lines(file).length, 3, 'a second logger appends');
});

t.test('a newline in a pod name cannot forge a log line', async (t) => {
  const dir = tempDir(t, 'forge');
  const file = path.join(dir, 'azure-vnet.log');
  const logger = createLogger({ file, name: 'azure-vnet' });
  const forged = 'web-0\n{"level":50,"msg":"forged","name":"azure-vnet"}\r\n';
  logger.info({ args: { K8S_POD_NAME: forged } }, `pod ${forged}`);
  const raw = fs.readFileSync(file, 'utf8');
  t.equal(raw.split('\n').filter(Boolean).length, 1, 'still one line');
  const [line] = lines(file);
  t.equal((line!.args as Record<string, string>).K8S_POD_NAME, forged, 'the value survives intact inside the JSON');
  t.equal(line!.msg, `pod ${forged}`);
  t.notOk(lines(file).some((l) => l.msg === 'forged'), 'no forged entry');
});

t.test('a SIGKILLed process keeps its last line', async (t) => {
  const dir = tempDir(t, 'kill');
  const file = path.join(dir, 'azure-vnet.log');
  const script = `import { createLogger } from ${JSON.stringify(LOG_MODULE)};
const log = createLogger({ file: ${JSON.stringify(file)}, name: 'azure-vnet' });
log.info('before the kill');
process.kill(process.pid, 'SIGKILL');`;
  const r = await run([process.execPath, '--input-type=module', '-e', script], { timeoutMs: 20_000 });
  t.not(r.code, 0, 'the child died');
  t.match(lines(file), [{ msg: 'before the kill' }]);
});

t.test('an unopenable file falls back to stderr, never stdout', async (t) => {
  const dir = tempDir(t, 'fallback');
  const blocker = path.join(dir, 'not-a-dir');
  fs.writeFileSync(blocker, '');
  const file = path.join(blocker, 'azure-vnet.log');
  const script = `import { createLogger } from ${JSON.stringify(LOG_MODULE)};
createLogger({ file: ${JSON.stringify(file)}, name: 'azure-vnet' }).info('after fallback');`;
  const r = await run([process.execPath, '--input-type=module', '-e', script], { timeoutMs: 20_000 });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '', 'nothing on stdout');
  const errLines = r.stderr
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(errLines, [
    { level: 40, msg: 'cannot open the log file; logging to stderr', file },
    { level: 30, msg: 'after fallback' },
  ]);
});
