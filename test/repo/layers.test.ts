/**
 * The import graph is a stack: plugin/ → adapters/ → native/ (config/ beside adapters/, both
 * below plugin/). A lower folder never imports a higher one, so the engine and the adapter
 * lifecycle can be used without the HTTP layer (their errors carry codes; plugin/errors.ts alone
 * turns them into HTTP answers). And the addon has one face: outside the tests, only
 * native/engine.ts loads it (native/binding.ts). Checked by scanning the sources' import specifiers.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Folder → top-level folders its sources must not import from. */
const FORBIDDEN: Record<string, string[]> = {
  native: ['adapters', 'config', 'plugin', 'examples', 'bench', 'test'],
  adapters: ['plugin', 'examples', 'bench', 'test'],
  config: ['plugin', 'examples', 'bench', 'test'],
  plugin: ['examples', 'bench', 'test'],
};

/** Every TypeScript / JavaScript source under `dir` (recursively; no build outputs or deps). */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'build') out.push(...sources(p));
    } else if (/\.(ts|mts|js|mjs|cjs)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Relative specifiers of static imports/exports, dynamic `import()` and `new URL(..., import.meta.url)`. */
export function importSpecifiers(text: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\bnew URL\(\s*['"]([^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) specs.push(m[1]!);
  return specs.filter((s) => s.startsWith('.'));
}

test('the scanner sees every import form', () => {
  const text = [
    "import { a } from '../plugin/errors.ts';",
    "import type {\n  B,\n} from '../../plugin/x.ts';",
    "export { c } from './c.ts';",
    "import './side-effect.ts';",
    "const m = await import('../plugin/y.ts');",
    "new Worker(new URL('./worker-boot.mjs', import.meta.url));",
    "import { z } from 'zod';",
  ].join('\n');
  assert.deepEqual(importSpecifiers(text).sort(), ['../../plugin/x.ts', '../plugin/errors.ts', '../plugin/y.ts', './c.ts', './side-effect.ts', './worker-boot.mjs']);
});

test('no source imports a folder above it (plugin → adapters → native)', () => {
  const violations: string[] = [];
  let scanned = 0;
  for (const [folder, forbidden] of Object.entries(FORBIDDEN)) {
    for (const file of sources(join(root, folder))) {
      scanned++;
      for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
        const target = relative(root, resolve(dirname(file), spec)).split(sep)[0]!;
        if (forbidden.includes(target)) violations.push(`${relative(root, file)} imports ${spec}`);
      }
    }
  }
  assert.ok(scanned > 50, `scanned only ${scanned} files`);
  assert.deepEqual(violations, [], `lower layers import higher ones:\n${violations.join('\n')}`);
});

test('outside test/, only native/engine.ts reaches the raw addon (native/binding.ts)', () => {
  const binding = join(root, 'native', 'binding.ts');
  const allowed = new Set([join(root, 'native', 'engine.ts')]);
  const offenders: string[] = [];
  for (const folder of ['native', 'adapters', 'config', 'plugin', 'examples', 'bench']) {
    for (const file of sources(join(root, folder))) {
      if (allowed.has(file)) continue;
      if (importSpecifiers(readFileSync(file, 'utf8')).some((spec) => resolve(dirname(file), spec) === binding)) offenders.push(relative(root, file));
    }
  }
  assert.deepEqual(offenders, [], 'these load the addon around the Engine face');
});
