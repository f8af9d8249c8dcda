/**
 * Incremental, UTF-8 safe detokenization (vLLM `detokenize_incrementally` / TGI `decode_token`).
 *
 * Decoding token by token breaks multi-byte characters (an emoji may be four byte tokens) and
 * tokenizers whose decoders look at neighbours (SentencePiece's leading space). So each step
 * decodes a short window `ids[prefixOffset:]` and compares it with the already emitted window
 * `ids[prefixOffset:readOffset]`; the difference is emitted only when the text does not end in
 * U+FFFD (an incomplete character), and then both offsets move forward.
 *
 * Fast path: when the tokenizer's decode is plain byte concatenation (byte-level BPE, no
 * clean-up; `Decoder.streamBytes`), each token's bytes go through one streaming UTF-8 decoder
 * instead: O(1) per token, no window re-decoding. Same text: a character split over tokens is
 * held back until complete, an incomplete one at the end becomes U+FFFD.
 */

/** What the detokenizer needs from a tokenizer. */
export interface Decoder {
  /** Decode ids with special tokens skipped. */
  decode(ids: number[]): string;
  /**
   * When set, `decode(ids)` equals the lossy UTF-8 decoding of the concatenated
   * `streamBytes(id)` (empty for skipped special tokens): the O(1) streaming path is used.
   */
  readonly streamBytes?: (id: number) => Uint8Array;
}

/** Prompt tokens kept as left context for the first decode (vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET). */
const PROMPT_CONTEXT = 5;

/** Streams text for one sequence; `push` each generated token, `flush` at the end. */
export class IncrementalDetokenizer {
  private ids: number[];
  private prefixOffset: number;
  private readOffset: number;
  /** Byte-level fast path: the token → bytes map and a streaming UTF-8 decoder. */
  private readonly bytesOf: ((id: number) => Uint8Array) | undefined;
  private readonly utf8: TextDecoder | undefined;

  /**
   * @param decoder The model's tokenizer (special tokens skipped).
   * @param promptIds The prompt; its last few tokens give the first decode its left context.
   */
  constructor(
    private readonly decoder: Decoder,
    promptIds: readonly number[] = [],
  ) {
    this.bytesOf = decoder.streamBytes;
    this.utf8 = this.bytesOf ? new TextDecoder('utf-8', { ignoreBOM: true }) : undefined;
    this.ids = this.bytesOf ? [] : promptIds.slice(-PROMPT_CONTEXT);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** Add one token; returns the new text that is now complete ('' while a character is split). */
  push(id: number): string {
    if (this.utf8) {
      const bytes = this.bytesOf!(id);
      return bytes.length === 0 ? '' : this.utf8.decode(bytes, { stream: true });
    }
    this.ids.push(id);
    const prefix = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decoder.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const delta = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.compact();
      return delta;
    }
    return '';
  }

  /** At the end of the sequence: whatever is still held back (an incomplete character becomes U+FFFD). */
  flush(): string {
    if (this.utf8) return this.utf8.decode();
    if (this.readOffset >= this.ids.length) return '';
    const prefix = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decoder.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }

  /** Drop ids left of the window so memory stays O(window), not O(sequence). */
  private compact(): void {
    if (this.prefixOffset > 64) {
      this.ids = this.ids.slice(this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
  }
}
