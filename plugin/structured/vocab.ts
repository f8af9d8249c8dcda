/**
 * The vocabulary xgrammar needs (`TokenizerInfo`), built from a model's own tokenizer.json.
 *
 * Follows xgrammar's `TokenizerInfo.from_huggingface` (python/xgrammar/tokenizer_info.py and
 * cpp/tokenizer_info.cc): the encoded vocabulary ordered by id (padded with "" to the model's
 * vocabulary size), the vocabulary type read from the tokenizer.json `decoder` (ByteLevel →
 * `byte_level`, ByteFallback → `byte_fallback`, else `raw`), and whether the tokenizer prepends
 * a space (a `Prepend "▁"` normalizer or a Metaspace pre-tokenizer that prepends).
 *
 * NOTE: xgrammar treats a token whose string is "" as a special token that no grammar allows.
 * Added tokens marked `special` (control tokens like `<|eot_id|>`, reserved tokens) are written
 * as "" so a constrained output can never contain them as if they were text; the model's stop
 * tokens keep their place as xgrammar stop tokens. Non-special added tokens (e.g. Qwen's
 * `<tool_call>`) are text: their content is encoded like the vocabulary's own pieces.
 *
 * NOTE: xgrammar 0.1.27 lets raw control bytes (U+0000-U+001F other than tab/newline/CR) into
 * JSON strings, where JSON forbids them, and matches strings byte by byte, so pieces that are
 * only part of a UTF-8 character can combine into invalid UTF-8 (measured with random walks).
 * Pieces holding a control byte or not decoding to complete UTF-8 characters are written as ""
 * too: a constrained output is then always valid UTF-8 and valid JSON, at the price that a
 * character the vocabulary has no whole piece for cannot appear in it.
 */

/** xgrammar's vocabulary types (`VocabType`). */
export type VocabType = 'raw' | 'byte_fallback' | 'byte_level';

/** Arguments of xgrammar's `TokenizerInfo.createTokenizerInfo`. */
export interface XGrammarVocab {
  /** Token strings in the tokenizer's encoding, index = token id; length = `vocabSize`. */
  encodedVocab: string[];
  vocabType: VocabType;
  /** Whether tokenization prepends a space (SentencePiece "▁" prefix). */
  addPrefixSpace: boolean;
  /** Size of the model's logits (config.json `vocab_size`; may exceed the tokenizer's). */
  vocabSize: number;
  /** Ids that end generation; the grammar allows them only where the output may end. */
  stopTokenIds: number[];
}

type Json = Record<string, unknown>;

/** The decoder types of a tokenizer.json `decoder` (flattening one `Sequence`). */
function decoderTypes(decoder: unknown): string[] {
  const d = decoder as { type?: string; decoders?: unknown[] } | null | undefined;
  if (!d || typeof d.type !== 'string') return [];
  if (d.type === 'Sequence' && Array.isArray(d.decoders)) {
    return d.decoders.map((x) => (x as { type?: string })?.type).filter((t): t is string => typeof t === 'string');
  }
  return [d.type];
}

/** `byte_level` / `byte_fallback` / `raw`, from the decoder as xgrammar's HFTokenizerAnalyzer does. */
export function detectVocabType(tokenizer: Json): VocabType {
  for (const t of decoderTypes(tokenizer.decoder)) {
    if (t === 'ByteLevel') return 'byte_level';
    if (t === 'ByteFallback') return 'byte_fallback';
  }
  return 'raw';
}

/** Whether the tokenizer prepends "▁" (a Prepend normalizer or a Metaspace pre-tokenizer with prepend). */
export function detectAddPrefixSpace(tokenizer: Json): boolean {
  const norm = tokenizer.normalizer as { type?: string; normalizers?: unknown[] } | null | undefined;
  const norms = norm?.type === 'Sequence' && Array.isArray(norm.normalizers) ? norm.normalizers : norm ? [norm] : [];
  if (norms.some((n) => (n as Json)?.type === 'Prepend' && (n as Json).prepend === '▁')) return true;
  const pre = tokenizer.pre_tokenizer as { type?: string; prepend_scheme?: string; add_prefix_space?: boolean } | null | undefined;
  if (pre?.type === 'Metaspace') return pre.prepend_scheme === 'always' || pre.prepend_scheme === 'first' || pre.add_prefix_space === true;
  return false;
}

/** GPT-2's bytes_to_unicode table: byte → the printable character byte-level BPE writes for it. */
function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return out;
}

/** Encode raw text the way a byte-level vocabulary stores it (UTF-8 bytes → bytes_to_unicode). */
function byteLevelEncode(text: string, table: string[]): string {
  let s = '';
  for (const b of Buffer.from(text, 'utf8')) s += table[b];
  return s;
}

/** Whether a byte is a control byte no constrained output may hold (not tab, LF or CR). */
const isBadControl = (b: number): boolean => (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b === 0x7f;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Whether a byte string is complete UTF-8 with no bad control byte. */
function usableBytes(bytes: Uint8Array): boolean {
  if (bytes.some(isBadControl)) return false;
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a vocabulary piece may appear in constrained output: it decodes (byte-level,
 * byte-fallback or raw) to complete UTF-8 characters without a bad control byte.
 */
function usablePiece(piece: string, vocabType: VocabType, inverse: Map<string, number> | undefined): boolean {
  if (vocabType === 'byte_level' && inverse) {
    const bytes = new Uint8Array(piece.length);
    let n = 0;
    for (const ch of piece) {
      const b = inverse.get(ch);
      if (b === undefined) return usableBytes(Buffer.from(piece, 'utf8')); // not a byte-level piece: raw text
      bytes[n++] = b;
    }
    return usableBytes(bytes.subarray(0, n));
  }
  if (vocabType === 'byte_fallback') {
    const m = /^<0x([0-9A-F]{2})>$/.exec(piece);
    if (m) return usableBytes(Uint8Array.of(parseInt(m[1]!, 16)));
  }
  return usableBytes(Buffer.from(piece, 'utf8'));
}

/** Encode raw text the way a byte-fallback (SentencePiece) vocabulary stores it (space → "▁"). */
function byteFallbackEncode(text: string): string {
  return text.replaceAll(' ', '▁');
}

/**
 * Build xgrammar's vocabulary from a parsed tokenizer.json.
 * @param tokenizer Parsed tokenizer.json (`model.vocab` must be a token → id map: BPE or WordPiece;
 *   a Unigram `model.vocab` list of [piece, score] is accepted too).
 * @param vocabSize The model's logits size (ids past the tokenizer's become special tokens;
 *   tokenizer ids past it are left out).
 * @param stopTokenIds The model's eos ids (generation_config / config), non-empty.
 * @throws Error when tokenizer.json has no `model.vocab`.
 */
export function buildXGrammarVocab(tokenizer: Json, vocabSize: number, stopTokenIds: number[]): XGrammarVocab {
  const model = tokenizer.model as { vocab?: unknown } | undefined;
  const vocabType = detectVocabType(tokenizer);
  const encodedVocab = new Array<string>(vocabSize).fill('');
  // Ids past the model's logits (tokens the model cannot produce, e.g. padded image tokens)
  // are left out, as xgrammar's from_huggingface does.
  const put = (piece: string, id: number): void => {
    if (Number.isInteger(id) && id >= 0 && id < vocabSize) encodedVocab[id] = piece;
  };
  if (Array.isArray(model?.vocab)) {
    (model.vocab as Array<[string, number]>).forEach(([piece], id) => put(piece, id));
  } else if (model?.vocab && typeof model.vocab === 'object') {
    for (const [piece, id] of Object.entries(model.vocab as Record<string, number>)) put(piece, id);
  } else {
    throw new Error('tokenizer.json: `model.vocab` is missing');
  }
  const table = vocabType === 'byte_level' ? byteToUnicode() : undefined;
  const inverse = table ? new Map(table.map((ch, b) => [ch, b])) : undefined;
  for (let id = 0; id < vocabSize; id++) if (!usablePiece(encodedVocab[id]!, vocabType, inverse)) encodedVocab[id] = '';
  const stops = new Set(stopTokenIds);
  for (const t of (tokenizer.added_tokens ?? []) as Array<{ id: number; content: string; special?: boolean }>) {
    if (t.special && !stops.has(t.id)) put('', t.id);
    else if (stops.has(t.id)) put(t.content, t.id);
    else put(table ? byteLevelEncode(t.content, table) : vocabType === 'byte_fallback' ? byteFallbackEncode(t.content) : t.content, t.id);
  }
  return { encodedVocab, vocabType, addPrefixSpace: detectAddPrefixSpace(tokenizer), vocabSize, stopTokenIds: [...stops] };
}
