/**
 * Perplexity of the engine's base model on the held-out Shakespeare text
 * (test/fixtures/tiny-shakespeare/heldout.txt, see HELDOUT-PROVENANCE.txt there), through
 * Engine.forward(). Used by test/native/quant.test.ts (a subset of windows) and
 * bench/perplexity.ts (all of them).
 *
 * Windows: the text's token ids cut into consecutive chunks of `window - 1` tokens (stride =
 * window - 1, no overlap); each chunk is scored as [BOS, chunk] so every chunk token is predicted
 * from the BOS and its own chunk prefix. ppl = exp(mean NLL over every predicted token).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Engine } from '../../native/engine.ts';
import { loadTokenizer } from '../../plugin/tokenizer.ts';
import { modelDir, repoRoot } from './helpers.ts';

export const heldoutPath = join(repoRoot, 'test', 'fixtures', 'tiny-shakespeare', 'heldout.txt');

/** Token ids of the held-out text (no special tokens) and the model's BOS id. */
export async function heldoutTokens(): Promise<{ ids: number[]; bos: number }> {
  const tok = await loadTokenizer(modelDir);
  const bos = (JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as { bos_token_id: number }).bos_token_id;
  return { ids: tok.encode(readFileSync(heldoutPath, 'utf8'), false), bos };
}

/** Perplexity over the first `maxWindows` windows (all when omitted). */
export async function perplexity(engine: Engine, ids: number[], bos: number, window = 256, maxWindows = Infinity): Promise<{ ppl: number; tokens: number; windows: number }> {
  let nll = 0;
  let count = 0;
  let windows = 0;
  for (let start = 0; start < ids.length && windows < maxWindows; start += window - 1, windows++) {
    const chunk = ids.slice(start, start + window - 1);
    const out = await engine.forward([bos, ...chunk]);
    const V = out.vocabSize;
    for (let i = 0; i < chunk.length; i++) {
      const row = out.logits.subarray(i * V, (i + 1) * V);
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
      nll += m + Math.log(s) - row[chunk[i]];
      count++;
    }
  }
  return { ppl: Math.exp(nll / count), tokens: count, windows };
}
