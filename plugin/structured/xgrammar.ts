/**
 * Load xgrammar's WASM build (`@mlc-ai/web-xgrammar`, pinned 0.1.27).
 *
 * NOTE: the package is `"type": "module"` but its `lib/index.js` is a UMD bundle, so a plain
 * `import` sees no exports. We evaluate the file's source with a CommonJS wrapper
 * (`exports, require, module, __filename, __dirname`), which takes the bundle's CommonJS branch.
 * The module is loaded once per thread; the WASM instance lives in that thread only (compiled
 * grammars and matchers cannot cross threads), which is why all xgrammar work runs in one
 * worker (./worker.ts).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as XGrammarTypes from '@mlc-ai/web-xgrammar';

/** The exports of `@mlc-ai/web-xgrammar`. */
export type XGrammar = typeof XGrammarTypes;

let loaded: XGrammar | undefined;

/** Evaluate the xgrammar bundle once (per thread) and return its exports. */
export function loadXGrammar(): XGrammar {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const mod = { exports: {} as Record<string, unknown> };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  new Function('exports', 'require', 'module', '__filename', '__dirname', readFileSync(file, 'utf8'))(
    mod.exports,
    require,
    mod,
    file,
    path.dirname(file),
  );
  loaded = mod.exports as unknown as XGrammar;
  return loaded;
}
