// The demo: 2 VMs, 2 pods each (plain attach), every cell of the matrix connects.
import t from 'tap';
import { runDemo } from '../../lab/demo.js';

t.test('npm run demo connects every pod everywhere', async (t) => {
  let output = '';
  const failures = await runDemo({ write: (text) => (output += text) });
  t.equal(failures, 0, output);
  t.match(output, /all connected/);
  t.match(output, /vm1-pod1 10\.240\.1\.4 .* ok as 198\.51\.100\.11 .* 200, 5 IPs/);
  t.match(output, /torn down/);
});
