/**
 * The raw bytes behind one token, for logprobs (`bytes`, `token`) where a piece may be part of
 * a multi-byte UTF-8 character.
 *
 * Byte-level BPE (GPT-2, Llama 3) spells each byte with one printable character (GPT-2's
 * `bytes_to_unicode` table); SentencePiece with byte fallback spells bytes as `<0xNN>` and
 * spaces as `▁`.
 */

/** GPT-2's `bytes_to_unicode` inverse: printable character code → byte value. */
function gpt2UnicodeToByte(): Map<number, number> {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map = new Map<number, number>();
  bs.forEach((b, i) => map.set(cs[i]!, b));
  return map;
}

const utf8 = new TextEncoder();

/**
 * Build `id → bytes` for a tokenizer. `decoderType` is tokenizer.json's `decoder.type`;
 * special tokens map to the UTF-8 of their text. Results are cached per id.
 */
export function buildTokenBytes(
  decoderType: string | undefined,
  idToToken: (id: number) => string | undefined,
  specialIds: ReadonlySet<number>,
): (id: number) => Uint8Array {
  const byteLevel = decoderType === 'ByteLevel' ? gpt2UnicodeToByte() : undefined;
  const cache = new Map<number, Uint8Array>();
  return (id) => {
    let out = cache.get(id);
    if (out) return out;
    const piece = idToToken(id) ?? '';
    if (specialIds.has(id)) {
      out = utf8.encode(piece);
    } else if (byteLevel) {
      const bytes: number[] = [];
      for (const ch of piece) {
        const b = byteLevel.get(ch.codePointAt(0)!);
        if (b === undefined) bytes.push(...utf8.encode(ch));
        else bytes.push(b);
      }
      out = Uint8Array.from(bytes);
    } else {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      out = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(piece.replaceAll('\u2581', ' '));
    }
    cache.set(id, out);
    return out;
  };
}

/**
 * NOTE: `ignoreBOM: true` keeps a leading U+FEFF. Without it the decoder strips it as a byte
 * order mark, and a vocabulary's `\uFEFFusing` and `using` (Llama 3, Qwen, Llama 2 all have
 * such tokens) would show as the same string.
 */
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Text shown for a token in logprobs: its bytes as UTF-8 (a leading U+FEFF kept), or, when they
 * are not valid UTF-8 on their own (part of a character), each byte escaped as `\xNN` (as
 * OpenAI shows them).
 */
export function tokenDisplay(bytes: Uint8Array): string {
  try {
    return strict.decode(bytes);
  } catch {
    return [...bytes].map((b) => '\\x' + b.toString(16).padStart(2, '0')).join('');
  }
}
