// scripts/check-image.sh as a test: the runtime image's tree staged from the
// Dockerfile's COPY lines, its installer and commands run against it, and its
// apt package names checked (see the script's header).
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

t.test('the Dockerfile runtime tree installs and runs', async (t) => {
  const res = spawnSync('bash', [path.join(REPO, 'scripts', 'check-image.sh')], { encoding: 'utf8', timeout: 300_000 });
  t.equal(res.status, 0, `check-image.sh exits 0\n${res.stdout}${res.stderr}`);
  t.match(res.stdout, /check-image: iptables: plugins VERSION ok/, 'iptables install');
  t.match(res.stdout, /check-image: ebpf: plugins VERSION ok/, 'ebpf install');
  t.match(res.stdout, /apt packages exist/, 'apt names checked');
  t.match(res.stdout, /^check-image: ok$/m);
});
