/**
 * Content identity of an adapter folder, so that whatever is derived from an adapter's weights
 * (host-tier load specs, materialised merges) follows its bytes, never its name or path alone.
 *
 * - `fileStamp(dir)`: a cheap stamp of adapter_config.json and adapter_model.safetensors
 *   (device, inode, size, mtime in ns): it changes whenever a file is rewritten or replaced, so it
 *   tells when the identity must be recomputed.
 * - `contentHash(config, weights)`: sha256 over both files' bytes: the identity itself. The host
 *   tier reads the weights once anyway (to warm the page cache for the upload), so hashing them
 *   costs no extra read.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

/** The files whose bytes define an adapter. */
export const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'] as const;

/** `dev:ino:size:mtimeNs` of each adapter file ("-" for a missing one), joined by "|". */
export async function fileStamp(dir: string): Promise<string> {
  const parts = await Promise.all(
    ADAPTER_FILES.map((f) =>
      stat(join(dir, f), { bigint: true }).then(
        (s) => `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`,
        () => '-',
      ),
    ),
  );
  return parts.join('|');
}

/** sha256 (hex) of the config bytes, a separator, then the weights bytes. */
export function contentHash(config: Uint8Array, weights: Uint8Array): string {
  const h = createHash('sha256');
  h.update(config);
  h.update('\0openlora\0');
  h.update(weights);
  return h.digest('hex');
}
