/**
 * Loads the compiled addon (build/Release/openlora.node) and types it as `NativeAddon`.
 *
 * The one place that touches the raw binary. Every failed attempt is collected into one error
 * (like sharp's loader), ending with the fix: `npm run build:native`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon } from './types.ts';

/** Repository root: native/binding.ts lives one folder below it. */
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the addon may be, most likely first. */
const candidates = [
  join(repoRoot, 'build', 'Release', 'openlora.node'),
  join(repoRoot, 'build', 'Debug', 'openlora.node'),
];

let cached: NativeAddon | undefined;

/**
 * The native addon, loaded once per process.
 * @throws Error listing every path tried and why it failed, and how to build the addon.
 */
export function loadNativeAddon(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of candidates) {
    try {
      cached = require(path) as NativeAddon;
      return cached;
    } catch (err) {
      failures.push(`  ${path}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    [
      'Could not load the openlora native addon. Tried:',
      ...failures,
      'Build it with `npm run build:native` (a C++17 compiler and Python 3 are required; CUDA is optional).',
    ].join('\n'),
  );
}
