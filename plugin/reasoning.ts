/**
 * Reasoning outputs: the `<think>…</think>` block of Qwen3, QwQ and the DeepSeek-R1 distills,
 * split from the answer, as vLLM's `qwen3` / `deepseek_r1` reasoning parsers do. The chat
 * endpoint returns it as `message.reasoning` (and `reasoning_content`, its older name that
 * LangChain and DeepSeek's clients read), the Responses API as a `reasoning` output item.
 *
 * The rule (vllm/reasoning/deepseek_r1_reasoning_parser.py, qwen3_reasoning_parser.py):
 *  - When the prompt already opened the block (the template ends with `<think>\n`, as
 *    DeepSeek-R1's does), the output starts as reasoning.
 *  - Otherwise an output that starts (after whitespace) with `<think>` opens it; any other output
 *    is all answer (Qwen3 with `enable_thinking: false`: its template closes an empty block).
 *  - Reasoning runs to `</think>`; the answer is the rest, its leading newlines dropped. An output
 *    cut inside the block (max_tokens) is all reasoning and an empty answer.
 * `<think>` and `</think>` are ordinary (non-special) added tokens in these vocabularies, so they
 * arrive as text and the split works on text. Logprobs, when asked for, cover the answer's tokens.
 */
import { heldBack } from './tools/parse.ts';

/** The tags of the reasoning block. */
export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

/** Per-model setting: `auto` (on when the chat template writes both tags), `think` (on), `none` (off). */
export type ReasoningParserSetting = 'auto' | 'think' | 'none';

/**
 * Whether a model's outputs are split: `think` and `none` as set; `auto` when the chat template
 * contains both `<think>` and `</think>` (the templates of the model families that write them).
 */
export function reasoningEnabled(setting: ReasoningParserSetting | undefined, template: string | undefined): boolean {
  if (setting === 'think') return true;
  if (setting === 'none') return false;
  return template !== undefined && template.includes(THINK_OPEN) && template.includes(THINK_CLOSE);
}

/** Whether a rendered prompt's tail leaves a reasoning block open (its last `<think>` is after its last `</think>`). */
export function promptOpensReasoning(promptTail: string): boolean {
  const open = promptTail.lastIndexOf(THINK_OPEN);
  return open >= 0 && open > promptTail.lastIndexOf(THINK_CLOSE);
}

/** One piece of split output: reasoning or answer text. */
export type ReasoningPiece = { reasoning: string } | { content: string };

/**
 * Splits one choice's output as it streams: text in, reasoning and answer pieces out, holding
 * back only what may still be part of a tag.
 */
export class ReasoningSplitter {
  private state: 'start' | 'reasoning' | 'afterClose' | 'content';
  private held = '';

  /** @param insidePrompt Whether the prompt left the block open (`promptOpensReasoning`). */
  constructor(insidePrompt: boolean) {
    this.state = insidePrompt ? 'reasoning' : 'start';
  }

  /** Whether the output is (still) inside the reasoning block. */
  get reasoning(): boolean {
    return this.state === 'reasoning';
  }

  /** Whether the output is in the answer (past the block, or never in one). */
  get answering(): boolean {
    return this.state === 'content';
  }

  /** Pieces for new text (possibly none). */
  push(text: string): ReasoningPiece[] {
    const out: ReasoningPiece[] = [];
    this.held += text;
    for (;;) {
      const s = this.held;
      if (this.state === 'start') {
        const t = s.trimStart();
        if (t.startsWith(THINK_OPEN)) {
          this.held = t.slice(THINK_OPEN.length);
          this.state = 'reasoning';
          continue;
        }
        if (THINK_OPEN.startsWith(t)) return out;  // whitespace, or the tag arriving in pieces
        this.state = 'content';
        continue;
      }
      if (this.state === 'reasoning') {
        const at = s.indexOf(THINK_CLOSE);
        if (at >= 0) {
          if (at > 0) out.push({ reasoning: s.slice(0, at) });
          this.held = s.slice(at + THINK_CLOSE.length);
          this.state = 'afterClose';
          continue;
        }
        const keep = heldBack(s, THINK_CLOSE);
        if (s.length > keep) out.push({ reasoning: s.slice(0, s.length - keep) });
        this.held = s.slice(s.length - keep);
        return out;
      }
      if (this.state === 'afterClose') {
        const t = s.replace(/^\n+/, '');
        if (t === '') {
          this.held = '';
          return out;
        }
        this.held = t;
        this.state = 'content';
        continue;
      }
      if (s !== '') out.push({ content: s });
      this.held = '';
      return out;
    }
  }

  /** The output ended: what was held back (a tag that never completed is text of its part). */
  end(): ReasoningPiece[] {
    const s = this.held;
    this.held = '';
    if (s === '') return [];
    if (this.state === 'reasoning') return [{ reasoning: s }];
    if (this.state === 'afterClose') return [];
    return [{ content: s }];
  }
}

/** A whole output split at once: the reasoning (null when there was no block) and the answer. */
export function splitReasoning(text: string, insidePrompt: boolean): { reasoning: string | null; content: string } {
  const s = new ReasoningSplitter(insidePrompt);
  let reasoning: string | null = insidePrompt ? '' : null;
  let content = '';
  for (const p of [...s.push(text), ...s.end()]) {
    if ('reasoning' in p) reasoning = (reasoning ?? '') + p.reasoning;
    else content += p.content;
  }
  if (reasoning === null && text.trimStart().startsWith(THINK_OPEN)) reasoning = '';
  return { reasoning, content };
}

/**
 * The tokens of the answer: `tokens` (in output order) without the leading ones that spell the
 * reasoning block (its tags and the newlines after it), found by byte length: the block is the
 * first `byteLength(text) - byteLength(content)` bytes of the output. A token that straddles the
 * boundary stays with the answer.
 * @param byteLength UTF-8 bytes a token id stands for (the tokenizer's `tokenBytes(id).length`).
 */
export function answerTokens<T extends { id: number }>(tokens: T[], text: string, content: string, byteLength: (id: number) => number): T[] {
  const block = Buffer.byteLength(text) - Buffer.byteLength(content);
  let at = 0;
  let bytes = 0;
  while (at < tokens.length && bytes + byteLength(tokens[at]!.id) <= block) bytes += byteLength(tokens[at++]!.id);
  return tokens.slice(at);
}
