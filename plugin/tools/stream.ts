/**
 * Tool-call parsing for streamed outputs: text deltas in, OpenAI chunk deltas out. The deltas add
 * up to the message the same output gets without streaming: the text is parsed by the same
 * function, `parseToolCalls` (./parse.ts).
 *
 * Prose is sent as it arrives while it cannot belong to a call (`settledContent`; text that may
 * still become a marker, `<tool_call>` arriving in pieces, waits until it is decided). From where
 * a call may start, the text is held until the output ends: whether it holds calls depends on text
 * not written yet (a later call that does not parse, or the output stopping inside one, makes it
 * all content) and a call sent cannot be taken back. Then the rest of the content goes, and each
 * call as one delta with its `index`, `id`, `type`, name and whole `arguments` (valid OpenAI
 * streaming: the SDKs and LangChain merge the deltas of an index). Models end their turn after
 * their calls, so little waits in practice. A Hermes block closed by `</tool_call>` that does not
 * parse decides early: the output is all content, sent at once, and the rest streams.
 */
import type { ToolFormat } from './format.ts';
import { parseToolCalls, type Settled, settledContent, type ToolCall } from './parse.ts';

/** A streamed tool-call delta (OpenAI `choices[].delta.tool_calls[]`). */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments?: string };
}

/** One output delta: prose or a tool-call piece. */
export type StreamDelta = { content: string } | { toolCall: ToolCallDelta };

const CLOSE = '</tool_call>';

/** Streaming parser of one choice's output. */
export class ToolStreamParser {
  /** The calls of the output (set by `end()`). */
  readonly calls: ToolCall[] = [];
  /** The output so far. */
  private raw = '';
  /** Its text not sent yet (the output's last characters). */
  private tail = '';
  /** What the unsent text is: see `Settled.next`. */
  private next: Settled['next'] = 'open';

  constructor(private readonly format: ToolFormat) {}

  /** Feed a text delta; returns the deltas to send (possibly none). */
  push(text: string): StreamDelta[] {
    this.raw += text;
    this.tail += text;
    // This delta and the characters before it where a `</tool_call>` may have begun.
    const recent = this.raw.slice(-(text.length + CLOSE.length - 1));
    if (this.next === 'open') {
      const s = settledContent(this.tail, this.format, this.sent === 0);
      this.next = s.next;
      if (s.next !== 'content') {
        const out = this.send(s.length);
        // The block may have closed in this same delta.
        if (s.next === 'held' && this.tail.includes(CLOSE)) this.decideEarly(out);
        return out;
      }
    } else if (this.next === 'held') {
      const out: StreamDelta[] = [];
      if (recent.includes(CLOSE)) this.decideEarly(out);
      return out;
    }
    return this.send(this.tail.length);
  }

  /**
   * The output ended: the rest of its content and its calls.
   * @param truncated It was cut by max_tokens (see `parseToolCalls`).
   */
  end(truncated = false): StreamDelta[] {
    const parsed = parseToolCalls(this.raw, this.format, truncated);
    const content = parsed.content ?? '';
    const out: StreamDelta[] = content.length > this.sent ? [{ content: content.slice(this.sent) }] : [];
    for (const [index, c] of parsed.toolCalls.entries()) {
      out.push({ toolCall: { index, id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments } } });
      this.calls.push(c);
    }
    this.tail = '';
    return out;
  }

  /** How many of the output's characters were sent as content: all but the unsent tail. */
  private get sent(): number {
    return this.raw.length - this.tail.length;
  }

  /** Send the first `n` characters of the unsent text as content. */
  private send(n: number): StreamDelta[] {
    if (n === 0) return [];
    const piece = this.tail.slice(0, n);
    this.tail = this.tail.slice(n);
    return [{ content: piece }];
  }

  /**
   * Held Hermes text that a `</tool_call>` closed: when the blocks up to the last one do not all
   * parse, neither does the whole output (`parseToolCalls`), so all of it is content from here on.
   */
  private decideEarly(out: StreamDelta[]): void {
    if (this.format.name !== 'hermes') return;
    const closed = this.tail.slice(0, this.tail.lastIndexOf(CLOSE) + CLOSE.length);
    if (parseToolCalls(closed, this.format).toolCalls.length > 0) return;
    this.next = 'content';
    out.push(...this.send(this.tail.length));
  }
}
