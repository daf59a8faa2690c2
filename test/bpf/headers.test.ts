// bpf/lib headers are self-contained: each compiles alone (make check-headers),
// so the include order of an entry program is never load-bearing.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

t.test('every bpf/lib header compiles on its own', (t) => {
  let out = '';
  let failed = false;
  try {
    out = execFileSync('make', ['-s', '-C', path.join(REPO_ROOT, 'bpf'), 'check-headers'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    failed = true;
    out = String((err as { stderr?: string }).stderr ?? err);
  }
  t.notOk(failed, out || 'make check-headers passed');
  t.end();
});
