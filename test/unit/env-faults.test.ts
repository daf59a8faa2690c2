// Small pure pieces of the environment-fault outcomes: the operator hint a
// filesystem error on the state directory gets, and the lab wireserver's
// hostile fault modes being accepted by its knob.
import t from 'tap';
import { storageHint } from '../../control/errors.js';
import { parseWireFault } from '../../lab/wire-fault.js';

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });

t.test('storageHint says what to do for full, read-only and permission errors', async (t) => {
  t.match(storageHint(errno('ENOSPC'), '/var/lib/vnet-cni'), /\/var\/lib\/vnet-cni is full: free space/);
  t.match(storageHint(errno('EDQUOT'), '/d'), /full/);
  t.match(storageHint(errno('EROFS'), '/d'), /read-only filesystem: remount it read-write/);
  t.match(storageHint(errno('EACCES'), '/d'), /write access to \/d/);
  t.equal(storageHint(errno('EIO'), '/d'), '', 'nothing made up for other errors');
  t.equal(storageHint(undefined, '/d'), '');
});

t.test('the wireserver knob accepts the hostile modes', async (t) => {
  for (const mode of ['huge', 'nested', 'entities', 'wrong'] as const) t.same(parseWireFault({ mode }), { mode });
  t.throws(() => parseWireFault({ mode: 'bogus' }), /huge, nested, entities, wrong/);
});
