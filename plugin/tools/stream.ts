/**
 * Incremental tool-call parsing for streamed outputs: text deltas in, OpenAI chunk deltas out.
 *
 * Emits `content` for prose and, per call, one delta with `index`, `id`, `type` and the
 * function `name`, then `arguments` in pieces as the model writes them (what the openai SDK's
 * stream helpers and LangChain's tool-call chunk merging expect). Text that might still become
 * a marker (`<tool_call>` arriving in pieces) is held back until it is decided. Formats and
 * the rules for missing special-token markers: ./format.ts, ./parse.ts.
 */
import type { ToolFormat } from './format.ts';
import { heldBack, newCallId, scanJson, type ToolCall, toCall } from './parse.ts';

/** A streamed tool-call delta (OpenAI `choices[].delta.tool_calls[]`). */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments?: string };
}

/** One output delta: prose or a tool-call piece. */
export type StreamDelta = { content: string } | { toolCall: ToolCallDelta };

const HEAD = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*/;

/** Follows one call object `{"name": ..., "arguments": ...}` as its text arrives. */
class CallScanner {
  text = '';
  name: string | undefined;
  /** Offset in `text` where the arguments value starts, once known. */
  private argsStart = -1;
  /** Offset up to which arguments were emitted / scanned. */
  private pos = 0;
  private depth = 0;
  private inStr = false;
  private argsEnd = -1;
  /** Offset just past the object's closing brace, once seen. */
  end = -1;

  /** Append text; returns the new argument characters (empty when none). */
  feed(chunk: string): { name?: string; args: string } {
    this.text += chunk;
    let name: string | undefined;
    if (this.argsStart < 0) {
      const m = HEAD.exec(this.text);
      if (m) {
        try {
          this.name = name = JSON.parse(`"${m[1]}"`) as string;
        } catch {
          this.name = name = m[1];
        }
        this.argsStart = this.pos = m[0].length;
      } else {
        this.findEnd(0);
        return { args: '' };
      }
    }
    let args = '';
    if (this.argsEnd < 0) {
      // Whitespace before the value (HEAD matched before it arrived) is not part of the arguments.
      if (this.pos === this.argsStart) while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.argsStart = ++this.pos;
      const from = this.pos;
      for (; this.pos < this.text.length; this.pos++) {
        const c = this.text[this.pos]!;
        if (this.inStr) {
          if (c === '\\') {
            if (this.pos + 1 >= this.text.length) break; // the escaped character has not arrived
            this.pos++;
          } else if (c === '"') this.inStr = false;
        } else if (c === '"') this.inStr = true;
        else if (c === '{' || c === '[') this.depth++;
        else if (c === '}' || c === ']') {
          if (this.depth === 0) {
            this.argsEnd = this.pos; // the outer object's brace: a scalar value ended
            break;
          }
          this.depth--;
          if (this.depth === 0) {
            this.argsEnd = ++this.pos;
            break;
          }
        } else if (this.depth === 0 && c === ',') {
          this.argsEnd = this.pos;
          break;
        }
      }
      args = this.text.slice(from, Math.min(this.pos, this.text.length));
      if (this.argsEnd >= 0) args = this.text.slice(from, this.argsEnd).replace(/\s+$/, '');
    }
    if (this.argsEnd >= 0) this.findEnd(this.argsEnd);
    return { name, args };
  }

  /** Find the close of the object from `from` (the start, or inside it past the arguments). */
  private findEnd(from: number): void {
    if (this.end >= 0) return;
    const i = scanJson(this.text, from, from === 0 ? 0 : 1, (c, depth) => depth === 1 && (c === '}' || c === ']'));
    if (i < this.text.length) this.end = i + 1;
  }
}

/** Streaming parser of one choice's output. */
export class ToolStreamParser {
  /** The calls seen so far (complete once `end()` has run). */
  readonly calls: ToolCall[] = [];
  private mode: 'start' | 'text' | 'call' | 'between' = 'start';
  private buf = '';
  private raw = '';
  private scanner: CallScanner | undefined;
  private args = '';
  private callId = '';

  constructor(private readonly format: ToolFormat) {
    if (format.name === 'hermes') this.mode = 'text';
  }

  /** Feed a text delta; returns the deltas to send (possibly none). */
  push(text: string): StreamDelta[] {
    const out: StreamDelta[] = [];
    this.raw += text;
    this.buf += text;
    this.run(out, false);
    return out;
  }

  /** The output ended: flush what was held back. */
  end(): StreamDelta[] {
    const out: StreamDelta[] = [];
    this.run(out, true);
    if (this.mode === 'call' && this.scanner) this.finishCall(out, true);
    if (this.buf !== '' && (this.mode === 'text' || this.mode === 'start')) out.push({ content: this.buf });
    this.buf = '';
    return out;
  }

  private run(out: StreamDelta[], final: boolean): void {
    for (;;) {
      const before = this.buf.length + this.mode;
      if (this.mode === 'start') this.decide(final);
      if (this.mode === 'text') this.text(out, final);
      if (this.mode === 'between') this.between(out, final);
      if (this.mode === 'call') this.call(out);
      if (before === this.buf.length + this.mode) return;
    }
  }

  /** llama3_json / mistral: the output is calls only when it starts with `{` / `[` (after a marker). */
  private decide(final: boolean): void {
    const t = this.buf.trimStart();
    const prefixes = ['<|python_tag|>', '[TOOL_CALLS]'];
    const p = prefixes.find((x) => t.startsWith(x));
    const body = p ? t.slice(p.length).trimStart() : t;
    if (body === '' || (!p && prefixes.some((x) => x.startsWith(t)))) {
      if (final) this.mode = 'text';
      return;
    }
    const open = this.format.name === 'mistral' ? '[' : '{';
    if (body.startsWith(open) || (this.format.name === 'mistral' && body.startsWith('{'))) {
      this.buf = this.format.name === 'mistral' && body.startsWith('[') ? body.slice(1) : body;
      this.mode = 'between';
    } else this.mode = 'text';
  }

  private text(out: StreamDelta[], final: boolean): void {
    if (this.format.name !== 'hermes') {
      if (this.buf) out.push({ content: this.buf });
      this.buf = '';
      return;
    }
    const at = this.buf.indexOf('<tool_call>');
    if (at >= 0) {
      const before = this.buf.slice(0, at);
      if (before.trim() !== '') out.push({ content: this.calls.length > 0 ? before.trim() : before.trimEnd() });
      this.buf = this.buf.slice(at + '<tool_call>'.length);
      this.startCall();
      return;
    }
    // At the end, after a call, a cut-off start of another tag is markup, not prose: dropped
    // (the non-streamed response keeps only the prose before the first call).
    const partialTag = heldBack(this.buf, '<tool_call>');
    if (final && this.calls.length > 0 && partialTag > 0 && this.buf.slice(0, this.buf.length - partialTag).trim() === '') this.buf = '';
    const keep = final ? 0 : partialTag;
    const emit = this.buf.slice(0, this.buf.length - keep);
    if (emit !== '' && (this.calls.length === 0 || emit.trim() !== '')) out.push({ content: emit });
    this.buf = this.buf.slice(this.buf.length - keep);
  }

  /** Between calls (and before the first one in list formats): skip separators, find the next `{`. */
  private between(out: StreamDelta[], final: boolean): void {
    if (this.format.name === 'hermes') {
      const t = this.buf.trimStart();
      if (t.startsWith('</tool_call>')) this.buf = t.slice('</tool_call>'.length);
      else if (t === '' || '</tool_call>'.startsWith(t)) {
        if (final) this.buf = '';
        return;
      }
      this.mode = 'text';
      return;
    }
    const t = this.buf.replace(/^[\s;,\]]+/, '');
    if (t.startsWith('{')) {
      this.buf = t;
      this.startCall();
    } else if (t !== '') {
      this.fail(out);
    } else this.buf = t;
  }

  private startCall(): void {
    this.mode = 'call';
    this.scanner = new CallScanner();
    this.args = '';
  }

  private call(out: StreamDelta[]): void {
    const s = this.scanner!;
    const chunk = this.buf;
    this.buf = '';
    const before = s.name;
    const { name, args } = s.feed(chunk);
    const index = this.calls.length;
    if (name !== undefined && before === undefined) {
      this.callId = newCallId();
      out.push({ toolCall: { index, id: this.callId, type: 'function', function: { name, arguments: '' } } });
    }
    if (args) {
      this.args += args;
      out.push({ toolCall: { index, function: { arguments: args } } });
    }
    if (s.end >= 0) {
      this.buf = s.text.slice(s.end);
      this.finishCall(out, false);
    }
  }

  /** Close the current call (the object ended, or the output did). */
  private finishCall(out: StreamDelta[], truncated: boolean): void {
    const s = this.scanner!;
    this.scanner = undefined;
    this.mode = 'between';
    if (s.name === undefined) {
      // Keys in another order: parse the whole object once it is complete.
      let call: ToolCall | undefined;
      try {
        const text = s.text.slice(0, s.end >= 0 ? s.end : undefined);
        call = toCall(JSON.parse(text), this.format, text);
      } catch {
        call = undefined;
      }
      if (!call) {
        if (this.calls.length === 0 && !truncated) this.fail(out);
        return;
      }
      const index = this.calls.length;
      out.push({ toolCall: { index, id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } } });
      this.calls.push(call);
      return;
    }
    // A call the output ended inside (a stop string, max_tokens) streamed its name and part of its
    // arguments, but is not a call: it does not count (finish_reason stays stop / length, as the
    // non-streamed response, which keeps such text as content).
    if (truncated) return;
    this.calls.push({ id: this.callId, type: 'function', function: { name: s.name, arguments: this.args } });
  }

  /** What looked like a call is not one: everything so far is prose. */
  private fail(out: StreamDelta[]): void {
    this.mode = 'text';
    const raw = this.raw;
    this.buf = '';
    if (this.calls.length === 0) out.push({ content: raw });
  }
}
