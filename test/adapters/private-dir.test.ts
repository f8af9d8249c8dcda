/**
 * The default cache folders (adapters/private-dir.ts) are private to the user: created 0700, and a
 * folder planted by someone else (symlink, open mode) is refused with a message naming it.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { privateTmpDir } from '../../adapters/private-dir.ts';

/** Run fn with os.tmpdir() pointing at a fresh folder (TMPDIR is read on every call). */
function withTmp(fn: (tmp: string) => void): void {
  const tmp = mkdtempSync(join(tmpdir(), 'private-dir-test-'));
  const old = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    fn(tmp);
  } finally {
    if (old === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = old;
    rmSync(tmp, { recursive: true, force: true });
  }
}

const uid = process.getuid?.() ?? 'user';

test('created under <tmpdir>/openlora-<uid> with mode 0700, and reused', () => {
  withTmp((tmp) => {
    const dir = privateTmpDir('merges');
    assert.equal(dir, join(tmp, `openlora-${uid}`, 'merges'));
    assert.equal(statSync(join(tmp, `openlora-${uid}`)).mode & 0o777, 0o700);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(privateTmpDir('merges'), dir);
  });
});

test('a folder open to others is refused, naming it', () => {
  withTmp((tmp) => {
    const root = join(tmp, `openlora-${uid}`);
    mkdirSync(root);
    chmodSync(root, 0o777);
    assert.throws(() => privateTmpDir('merges'), (e: Error) => e.message.includes(root) && /open to other users/.test(e.message) && /mergeDir/.test(e.message));
  });
});

test('a symlink planted in its place is refused', () => {
  withTmp((tmp) => {
    const target = join(tmp, 'elsewhere');
    mkdirSync(target, { mode: 0o700 });
    symlinkSync(target, join(tmp, `openlora-${uid}`));
    assert.throws(() => privateTmpDir('adapter-cache'), /symbolic link/);
  });
});
