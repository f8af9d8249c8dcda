/**
 * The default folders openlora writes derived files to (the adapter download cache, materialised
 * merges) when the config names none: under the OS temp folder, but private to the user.
 *
 * NOTE(why): a fixed name in a shared temp folder (`/tmp/openlora-merges`) lets another local
 * user create it first and plant files that would then be served as adapters or merges. So the
 * default is `<tmpdir>/openlora-<uid>/<kind>`, created with mode 0700, and an existing folder is
 * used only if it is a real directory (not a symlink) owned by this user and closed to others
 * (the checks tmux and ssh-agent make on their sockets' folders).
 */
import { lstatSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Return `<tmpdir>/openlora-<uid>/<kind>`, creating both levels with mode 0700.
 * @param kind sub-folder name, e.g. "merges" or "adapter-cache".
 * @throws Error at start-up when `<tmpdir>/openlora-<uid>` exists but is a
 *   symlink, not a directory, owned by another user, or readable/writable by group or others; the
 *   message names the folder and says to set the config's folder option instead.
 */
export function privateTmpDir(kind: string): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  const root = join(tmpdir(), `openlora-${uid ?? 'user'}`);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const st = lstatSync(root);
  const why = st.isSymbolicLink()
    ? 'is a symbolic link'
    : !st.isDirectory()
      ? 'is not a directory'
      : uid !== undefined && st.uid !== uid
        ? `is owned by uid ${st.uid}, not ${uid}`
        : (st.mode & 0o077) !== 0
          ? `is open to other users (mode ${(st.mode & 0o777).toString(8)})`
          : '';
  if (why) {
    throw new Error(
      `The default cache folder ${root} ${why}: refusing to use it. Remove it, or set mergeDir / adapterCache.dir in the config.`,
    );
  }
  const dir = join(root, kind);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}
