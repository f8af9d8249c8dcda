/**
 * Adapter folders that add tokens to the vocabulary are refused.
 *
 * A fine-tune that grew the vocabulary (`tokenizer.add_tokens` + `resize_token_embeddings`) needs
 * embedding and lm_head rows for the new ids; a LoRA here carries none, so those ids would index
 * past the base's embedding. vLLM refuses such extra vocabulary too. Tokenizer files saved beside
 * an adapter that add nothing (every id inside the base vocabulary: the common case, a copy of
 * the base tokenizer) are ignored: the base model's tokenizer is always the one used.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdapterError } from './errors.ts';

/** Most bytes of tokenizer.json read to find its `added_tokens` (HF writes it near the top). */
const HEAD_BYTES = 4 << 20;

/**
 * The JSON text of the array after `"added_tokens":` in `text`, or undefined when absent or
 * cut off (a string-aware bracket match: no full parse of a many-megabyte tokenizer.json).
 */
export function addedTokensSlice(text: string): string | undefined {
  const key = /"added_tokens"\s*:\s*\[/.exec(text);
  if (!key) return undefined;
  const start = key.index + key[0].length - 1;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) return text.slice(start, i + 1);
    }
  }
  return undefined;
}

async function readText(file: string, maxBytes?: number): Promise<string | undefined> {
  try {
    const buf = await readFile(file);
    return buf.subarray(0, maxBytes ?? buf.length).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AdapterError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

/**
 * Refuse an adapter folder whose `added_tokens.json` or `tokenizer.json` declares token ids at
 * or beyond the base vocabulary (`vocabSize` rows).
 * @throws AdapterError (400 invalid_adapter) naming the file, how many tokens it adds and the
 *   base vocabulary size; also when such a file is unreadable or not JSON.
 */
export async function checkNoAddedVocab(dir: string, vocabSize: number): Promise<void> {
  const found: Array<{ file: string; ids: number[] }> = [];
  const addedFile = join(dir, 'added_tokens.json');
  const added = await readText(addedFile);
  if (added !== undefined) {
    let map: unknown;
    try {
      map = JSON.parse(added);
    } catch (err) {
      throw new AdapterError(`${addedFile}: not valid JSON (${(err as Error).message})`);
    }
    const ids = Object.values(map && typeof map === 'object' ? map : {}).filter((v): v is number => typeof v === 'number');
    found.push({ file: addedFile, ids });
  }
  const tokFile = join(dir, 'tokenizer.json');
  const head = await readText(tokFile, HEAD_BYTES);
  if (head !== undefined) {
    const slice = addedTokensSlice(head) ?? addedTokensSlice((await readText(tokFile)) ?? '');
    let list: unknown = [];
    try {
      if (slice !== undefined) list = JSON.parse(slice);
    } catch (err) {
      throw new AdapterError(`${tokFile}: added_tokens is not valid JSON (${(err as Error).message})`);
    }
    const ids = (Array.isArray(list) ? list : []).map((t: unknown) => (t as { id?: unknown })?.id).filter((v): v is number => typeof v === 'number');
    found.push({ file: tokFile, ids });
  }
  for (const { file, ids } of found) {
    const extra = ids.filter((id) => id >= vocabSize).sort((a, b) => a - b);
    if (extra.length > 0) {
      throw new AdapterError(
        `${file}: the adapter adds ${extra.length} token(s) beyond the base vocabulary of ${vocabSize} (ids ${extra[0]}..${extra.at(-1)}); ` +
          'added vocabulary needs new embedding rows, which a LoRA adapter cannot carry (vLLM refuses it too).',
      );
    }
  }
}
