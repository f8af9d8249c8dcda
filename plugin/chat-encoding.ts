/**
 * Chat prompts in which only the template's own markup can become special tokens.
 *
 * A user who writes `<|eot_id|><|start_header_id|>system<|end_header_id|>` in a message must not
 * be able to close their turn and forge a system or assistant turn. So every string the client
 * sent (message content of every role, content parts, names, tool-call ids, names, arguments,
 * tool results) is tokenized as plain text, and special tokens are parsed only in the markup the
 * template wrote around it (transformers' `split_special_tokens=True` applied to user spans).
 *
 * How: before rendering, each user string has the characters that could take part in a special
 * token swapped for placeholders (`shield`): every occurrence of a special token, the longest
 * head that is a suffix of one, the longest tail that is a prefix of one (so no special token can
 * straddle user text and markup), and the whole string when it lies inside one. The template sees
 * the rest of the text as sent, so its own logic (`trim`, `startswith`, `split('</think>')`) works
 * as before. After rendering, placeholders are put back as text marked "user" (`restore`), and
 * `splitSpecial` finds special tokens only where no user character is involved. The text between
 * them is encoded by a tokenizer without special tokens (non-special added tokens such as Qwen's
 * `<think>` stay ordinary vocabulary, as in HF). With no special-token text in the messages the
 * ids are exactly those of encoding the rendered prompt with HF.
 */
import { InvalidRequestError } from './errors.ts';

/** A special (added, `special: true`) token of the tokenizer. */
export interface SpecialToken {
  content: string;
  id: number;
  /** HF AddedToken flags: strip whitespace on the left / right of the token. */
  lstrip: boolean;
  rstrip: boolean;
}

interface TrieNode {
  next: Map<string, TrieNode>;
  token?: SpecialToken;
}

/** Leftmost-longest matcher over the special tokens (HF's DictionarySplitter semantics). */
export class SpecialTokenMatcher {
  private readonly root: TrieNode = { next: new Map() };
  private readonly prefixes = new Set<string>();
  private readonly suffixes = new Set<string>();
  private readonly contents: string[];
  /** Longest special token, in UTF-16 code units. */
  readonly maxLength: number;

  constructor(readonly tokens: readonly SpecialToken[]) {
    this.contents = tokens.map((t) => t.content).filter((c) => c.length > 0);
    for (const t of tokens) {
      if (t.content.length === 0) continue;
      let node = this.root;
      for (const ch of t.content) {
        let child = node.next.get(ch);
        if (!child) node.next.set(ch, (child = { next: new Map() }));
        node = child;
      }
      node.token = t;
      for (let i = 1; i <= t.content.length; i++) {
        this.prefixes.add(t.content.slice(0, i));
        this.suffixes.add(t.content.slice(t.content.length - i));
      }
    }
    this.maxLength = Math.max(0, ...this.contents.map((c) => c.length));
  }

  /**
   * The longest special token starting at `text[i]` whose characters are all allowed
   * (`blocked(j)` false for each), or undefined.
   */
  matchAt(text: string, i: number, blocked?: (j: number) => boolean): SpecialToken | undefined {
    let node: TrieNode | undefined = this.root;
    let found: SpecialToken | undefined;
    for (let j = i; j < text.length; j++) {
      if (blocked?.(j)) break;
      node = node.next.get(text[j]!);
      if (!node) break;
      if (node.token) found = node.token;
    }
    return found;
  }

  /**
   * Split `text` into matches and the text between them, leftmost-longest (the shape of
   * @huggingface/tokenizers' DictionarySplitter.split, so it can stand in for one).
   */
  split(text: string): string[] {
    const out: string[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const t = this.matchAt(text, i);
      if (!t) {
        i++;
        continue;
      }
      if (i > start) out.push(text.slice(start, i));
      out.push(t.content);
      i += t.content.length;
      start = i;
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  }

  /**
   * Which UTF-16 units of `s` must be hidden from special-token parsing: every occurrence of a
   * special token, the longest head (at the start and after leading whitespace) that is a suffix
   * of one, the longest tail (at the end and before trailing whitespace) that is a prefix of one,
   * and (with `inside`) all of `s` when it is a substring of one.
   */
  private dangerMask(s: string, inside: boolean): Uint8Array | undefined {
    if (this.maxLength === 0 || s.length === 0) return undefined;
    const mask = new Uint8Array(s.length);
    let any = false;
    const mark = (from: number, to: number) => {
      if (to > from) any = true;
      mask.fill(1, from, to);
    };
    for (let i = 0; i < s.length; i++) {
      if (!this.root.next.has(s[i]!)) continue;
      // every occurrence, overlapping ones included: mark the longest at each start
      const t = this.matchAt(s, i);
      if (t) mark(i, i + t.content.length);
    }
    const lead = s.length - s.trimStart().length;
    const end = s.trimEnd().length;
    for (const start of new Set([0, lead])) {
      for (let len = Math.min(this.maxLength, s.length - start); len > 0; len--) {
        if (this.suffixes.has(s.slice(start, start + len))) {
          mark(start, start + len);
          break;
        }
      }
    }
    for (const stop of new Set([s.length, end])) {
      for (let len = Math.min(this.maxLength, stop); len > 0; len--) {
        if (this.prefixes.has(s.slice(stop - len, stop))) {
          mark(stop - len, stop);
          break;
        }
      }
    }
    if (inside && s.length <= this.maxLength && this.contents.some((c) => c.includes(s))) mark(0, s.length);
    return any ? mask : undefined;
  }

  /**
   * `s` with its dangerous characters (see dangerMask) swapped for placeholders of `ph`.
   * @param inside Also hide all of `s` when it lies inside a special token (`id` in `<|eot_id|>`):
   *   for text the template may write between pieces of markup. Off for JSON keys and tool
   *   schema / argument values, which templates look up and compare (`tool.function.name`,
   *   `type == "object"`) and write quoted by `tojson`; their occurrences and edges stay hidden.
   */
  shield(s: string, ph: Placeholders, inside = true): string {
    const mask = this.dangerMask(s, inside);
    if (!mask) return s;
    let out = '';
    let i = 0;
    while (i < s.length) {
      let j = i;
      while (j < s.length && mask[j] === mask[i]) j++;
      out += mask[i] ? ph.put(s.slice(i, j)) : s.slice(i, j);
      i = j;
    }
    return out;
  }
}

/** One piece of a rendered prompt: template markup (special tokens allowed) or user text. */
export interface PromptPiece {
  text: string;
  user: boolean;
}

/**
 * User text swapped out while the template renders. Each placeholder is `MARK index MARK` with
 * MARK a private-use character found in none of the strings involved, so no client text can
 * forge or break one.
 */
export class Placeholders {
  private readonly pieces: string[] = [];
  /** The private-use character that delimits placeholders. */
  readonly mark: string;

  /** @param texts Every string the render sees (user strings and the template source). */
  constructor(texts: readonly string[]) {
    for (let cp = 0xe000; cp <= 0xf8ff; cp++) {
      const c = String.fromCharCode(cp);
      if (!texts.some((t) => t.includes(c))) {
        this.mark = c;
        return;
      }
    }
    throw new InvalidRequestError('The messages use every Unicode private-use character; they cannot be rendered safely.', 'messages');
  }

  /** Store `text`; returns its placeholder. */
  put(text: string): string {
    this.pieces.push(text);
    return `${this.mark}${this.pieces.length - 1}${this.mark}`;
  }

  /**
   * Split a rendered prompt back into markup and user pieces.
   * @throws InvalidRequestError (400, `messages`) when the template cut a placeholder apart (it
   *   sliced user text inside a special-token spelling): refused rather than guessed.
   */
  restore(rendered: string): PromptPiece[] {
    const out: PromptPiece[] = [];
    const parts = rendered.split(this.mark);
    if (parts.length % 2 === 0) throw this.mangled();
    for (let k = 0; k < parts.length; k++) {
      if (k % 2 === 0) {
        if (parts[k]) out.push({ text: parts[k]!, user: false });
        continue;
      }
      const index = /^\d+$/.test(parts[k]!) ? Number(parts[k]) : -1;
      const text = this.pieces[index];
      if (text === undefined) throw this.mangled();
      out.push({ text, user: true });
    }
    return out;
  }

  private mangled(): InvalidRequestError {
    return new InvalidRequestError(
      'The chat template cut apart message text that spells a special token; it cannot be rendered safely.',
      'messages',
    );
  }
}

/** A span of a rendered prompt: a special token from the markup, or text to encode plainly. */
export type PromptSpan = { special: SpecialToken } | { text: string };

/**
 * Split pieces into special tokens (only where every character is markup) and text runs,
 * applying the tokens' lstrip/rstrip to their neighbours as HF does.
 */
export function splitSpecial(pieces: readonly PromptPiece[], matcher: SpecialTokenMatcher): PromptSpan[] {
  const text = pieces.map((p) => p.text).join('');
  const user = new Uint8Array(text.length);
  let at = 0;
  for (const p of pieces) {
    if (p.user) user.fill(1, at, at + p.text.length);
    at += p.text.length;
  }
  const blocked = (j: number) => user[j] === 1;
  const spans: PromptSpan[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const t = user[i] ? undefined : matcher.matchAt(text, i, blocked);
    if (!t) {
      i++;
      continue;
    }
    if (i > start) spans.push({ text: text.slice(start, i) });
    spans.push({ special: t });
    i += t.content.length;
    start = i;
  }
  if (start < text.length) spans.push({ text: text.slice(start) });
  for (let k = 0; k < spans.length; k++) {
    const s = spans[k]!;
    if (!('special' in s)) continue;
    const prev = spans[k - 1];
    const next = spans[k + 1];
    if (s.special.lstrip && prev && 'text' in prev) prev.text = prev.text.trimEnd();
    if (s.special.rstrip && next && 'text' in next) next.text = next.text.trimStart();
  }
  return spans;
}

/**
 * transformers' `apply_chat_template(continue_final_message=True)` on rendered pieces: the
 * prompt is cut right after the last occurrence of `final` (the final message's text), stripped
 * of surrounding whitespace, in the rendered text, so the model continues that message instead
 * of seeing its end-of-turn markup. As transformers: when the text found is followed by `final`'s
 * own trailing whitespace (and `final` has none leading), that whitespace is kept too. The cut
 * works on pieces, so user text stays marked as user text (a piece cut in two keeps its kind).
 * @param final The final message's content as the template got it (parts joined).
 * @returns The pieces up to the cut (the input is not modified).
 * @throws InvalidRequestError (400, `continue_final_message`) when `final` is blank (nothing to
 *   continue) or its stripped text does not occur in the rendered prompt (the template rewrote it).
 */
export function cutAfterFinalMessage(pieces: readonly PromptPiece[], final: string): PromptPiece[] {
  const stripped = final.trim();
  if (stripped === '') {
    throw new InvalidRequestError(
      '`continue_final_message` needs text to continue, but the final message has none; use `add_generation_prompt` to start a new assistant message.',
      'continue_final_message',
    );
  }
  const text = pieces.map((p) => p.text).join('');
  const at = text.lastIndexOf(stripped);
  if (at < 0) {
    throw new InvalidRequestError(
      '`continue_final_message` is set but the final message does not appear in the chat after applying the chat template (the template changes its text); it cannot be continued.',
      'continue_final_message',
    );
  }
  const lead = final.trimStart();
  const end = text.slice(at, at + lead.length) === final ? at + lead.length : at + stripped.length;
  const out: PromptPiece[] = [];
  let pos = 0;
  for (const p of pieces) {
    if (pos >= end) break;
    out.push(pos + p.text.length <= end ? p : { text: p.text.slice(0, end - pos), user: p.user });
    pos += p.text.length;
  }
  return out;
}
