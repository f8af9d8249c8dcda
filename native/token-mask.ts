/**
 * Allowed-token bitmasks for constrained decoding, in xgrammar's layout (the layout of
 * `SequenceParams.tokenMask` and `setTokenMask`): over a vocabulary of `vocabSize` tokens (the
 * model's logits width, ModelInfo.vocabSize) a mask is ceil(vocabSize / 32) 32-bit words and
 * token i is allowed when bit (i & 31) of word (i >> 5) is set; bits at or beyond vocabSize are
 * ignored. The engine side is native/src/token_mask.h.
 */
import { NativeError } from './errors.ts';

/** Words of a mask over `vocabSize` tokens: ceil(vocabSize / 32). */
export function tokenMaskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

/** A mask allowing exactly `tokens` (ids in [0, vocabSize)). */
export function tokenMaskOf(vocabSize: number, tokens: Iterable<number>): Int32Array {
  const mask = new Int32Array(tokenMaskWords(vocabSize));
  for (const t of tokens) mask[t >> 5] |= 1 << (t & 31);
  return mask;
}

/** Whether `mask` allows `token`. */
export function tokenAllowed(mask: Int32Array, token: number): boolean {
  return ((mask[token >> 5] >>> (token & 31)) & 1) === 1;
}

/**
 * Whether `mask` (tokenMaskWords(vocabSize) words) allows at least one token in [0, vocabSize).
 * A grammar whose matcher is not terminated yet allows nothing can never be completed (e.g. a
 * JSON schema whose `$ref` recurses without a base case).
 */
export function allowsAnyToken(mask: Int32Array | Uint32Array, vocabSize: number): boolean {
  const words = Math.min(mask.length, tokenMaskWords(vocabSize));
  const tail = vocabSize & 31;
  for (let w = 0; w < words; w++) {
    const bits = w === tokenMaskWords(vocabSize) - 1 && tail !== 0 ? mask[w]! & ((1 << tail) - 1) : mask[w]!;
    if (bits !== 0) return true;
  }
  return false;
}

/**
 * Check a mask for a model of `vocabSize` tokens: an Int32Array (or Uint32Array) of
 * tokenMaskWords(vocabSize) words with at least one allowed token in [0, vocabSize).
 * @throws NativeError `invalid_argument` (param `field`) saying what is wrong.
 */
export function checkTokenMask(mask: unknown, vocabSize: number, field = 'tokenMask'): asserts mask is Int32Array {
  const words = tokenMaskWords(vocabSize);
  if (!(mask instanceof Int32Array) && !(mask instanceof Uint32Array)) {
    throw new NativeError(`${field} must be an Int32Array token bitmask of ${words} words`, 'invalid_argument', field);
  }
  if (mask.length !== words) {
    throw new NativeError(
      `${field} has ${mask.length} words; a token mask for the model's ${vocabSize} logits has ceil(${vocabSize} / 32) = ${words} 32-bit words`,
      'invalid_argument',
      field,
    );
  }
  if (allowsAnyToken(mask as Int32Array, vocabSize)) return;
  throw new NativeError(
    `${field} allows no token in [0, ${vocabSize}): a constrained sequence needs at least one allowed token (is the grammar's matcher stuck?)`,
    'invalid_argument',
    field,
  );
}
