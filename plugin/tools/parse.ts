/**
 * Parse a finished output into OpenAI `tool_calls` (formats: ./format.ts), and tell how much of
 * an unfinished one is content whatever comes next (what a stream may send early: ./stream.ts).
 *
 * The text is what the client would otherwise see (special tokens already dropped by the
 * detokenizer), so markers that are special tokens (`<|python_tag|>`, Mistral's
 * `[TOOL_CALLS]`) may be absent: a Llama output that *starts* with a JSON object holding
 * `name` and `parameters` is a call, and so is a Mistral output starting with a JSON array of
 * such objects. Text that does not parse stays content (never an error: `auto` lets the model
 * answer in prose).
 */
import { randomBytes } from 'node:crypto';
import type { ToolFormat } from './format.ts';

/** Where a Hermes call starts. */
const OPEN = '<tool_call>';
/** Special tokens before llama3_json / mistral calls (absent when the detokenizer dropped them). */
const MARKERS = ['<|python_tag|>', '[TOOL_CALLS]'];

/** One parsed call, in OpenAI's shape. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A finished output split into prose and calls. */
export interface ParsedOutput {
  /** Text outside the calls, or null when there is none. */
  content: string | null;
  toolCalls: ToolCall[];
}

/** A new OpenAI-style call id (`call_` + 24 alphanumerics). */
export function newCallId(): string {
  return 'call_' + randomBytes(18).toString('base64url').replace(/[-_]/g, 'x').slice(0, 24);
}

/**
 * `{name, arguments|parameters}` → a ToolCall; undefined when the object is not a call.
 * @param raw The object's JSON text, when known: the arguments are then its own text (as the
 *   stream sends them), not JSON.stringify of the parsed value, which rounds integers past 2^53
 *   (`-33332333333333933332033333` became `-3.333233333333393e+25`) and respaces the object.
 */
export function toCall(v: unknown, format: ToolFormat, raw?: string): ToolCall | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.name !== 'string' || o.name === '') return undefined;
  const key = [format.argsKey, 'arguments', 'parameters'].find((k) => o[k] != null);
  const args = key ? o[key] : {};
  const text = typeof args === 'string' ? args : ((key && raw !== undefined ? rawMember(raw, key) : undefined) ?? JSON.stringify(args));
  return { id: newCallId(), type: 'function', function: { name: o.name, arguments: text } };
}

/**
 * The text of the value of top-level member `key` of the JSON object at the start of `text`
 * (whitespace around it dropped), or undefined when `text` is not such an object.
 */
export function rawMember(text: string, key: string): string | undefined {
  let i = text.indexOf('{') + 1;
  if (i === 0) return undefined;
  const n = text.length;
  const skipWs = () => {
    while (i < n && /\s/.test(text[i]!)) i++;
  };
  for (;;) {
    skipWs();
    if (text[i] !== '"') return undefined;
    const ks = i++;
    while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= n) return undefined;
    let k: string;
    try {
      k = JSON.parse(text.slice(ks, ++i)) as string;
    } catch {
      return undefined;
    }
    skipWs();
    if (text[i++] !== ':') return undefined;
    skipWs();
    const vs = i;
    i = scanJson(text, i, 0, (c, depth) => depth === 0 && (c === ',' || c === '}' || c === ']'));
    if (i >= n) return undefined;
    if (k === key) return text.slice(vs, i).trimEnd();
    if (text[i++] !== ',') return undefined;
  }
}

function tryJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** Split `s` at top-level occurrences of `sep` (outside JSON strings and brackets). */
export function splitTopLevel(s: string, sep: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const i = scanJson(s, start, 0, (_c, depth, at) => depth === 0 && s.startsWith(sep, at));
    out.push(s.slice(start, i));
    if (i >= s.length) return out;
    start = i + sep.length;
  }
}

/**
 * Walk `s` from `from` over the characters outside JSON strings (escapes honoured): the index of
 * the first one for which `stop(c, depth, index)` holds, or s.length. `depth` is the number of
 * brackets (`{` / `[`) open before c, counting from `depth0` at `from`.
 */
export function scanJson(s: string, from: number, depth0: number, stop: (c: string, depth: number, at: number) => boolean): number {
  let depth = depth0;
  let inStr = false;
  for (let i = from; i < s.length; i++) {
    const c = s[i]!;
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
      continue;
    }
    if (stop(c, depth, i)) return i;
    if (c === '"') inStr = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return s.length;
}

/**
 * Split a finished output into content and tool calls; the stream of the same output adds up to
 * the same message (./stream.ts parses it here too).
 *
 * Hermes, as vLLM's parser: each `<tool_call>` runs to the next `</tool_call>` (or the end) and its
 * text must be one call object, so a `</tool_call>` inside a JSON string ends the call there and
 * it does not parse. The content is the text before the first call as written (not trimmed),
 * null when that is empty or only whitespace (vLLM would send the blank); text after the calls
 * is dropped. A call that does not parse leaves the whole output as content (so a closed block
 * that does not parse decides it, whatever follows: the stream relies on that). Function names are not checked against
 * the request's `tools` (vLLM neither): the client gets what the model wrote and answers a call
 * to an unknown tool itself. With `format.oneCall` (`parallel_tool_calls: false`) only the first
 * call is kept, once the whole output parsed as above (vLLM filters the parsed calls the same way).
 * @param text The decoded output (special tokens skipped).
 * @param truncated The output was cut by max_tokens (finish_reason `length`): a last call that
 *   does not parse was cut short and is dropped, keeping the prose and the complete calls before
 *   it; otherwise any call that does not parse leaves the whole text as content.
 */
export function parseToolCalls(text: string, format: ToolFormat, truncated = false): ParsedOutput {
  const parsed = parseAllCalls(text, format, truncated);
  return format.oneCall && parsed.toolCalls.length > 1 ? { content: parsed.content, toolCalls: parsed.toolCalls.slice(0, 1) } : parsed;
}

/** `parseToolCalls` without the `oneCall` cut: every call of the output. */
function parseAllCalls(text: string, format: ToolFormat, truncated: boolean): ParsedOutput {
  const none: ParsedOutput = { content: text === '' ? null : text, toolCalls: [] };
  if (format.name === 'hermes') {
    const calls: ToolCall[] = [];
    const re = /<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g;
    const first = text.indexOf(OPEN);
    if (first < 0) return none;
    const matches = [...text.matchAll(re)];
    for (const [i, m] of matches.entries()) {
      // An unclosed last call (the output ended): drop a cut-off start of its closing tag.
      const body = m[0].endsWith('</tool_call>') ? m[1]! : m[1]!.slice(0, m[1]!.length - heldBack(m[1]!, '</tool_call>'));
      const call = toCall(tryJson(body.trim()), format, body);
      if (!call && truncated && i === matches.length - 1 && !m[0].endsWith('</tool_call>')) break;
      if (!call) return none;
      calls.push(call);
    }
    const content = text.slice(0, first);
    return { content: content.trim() === '' ? null : content, toolCalls: calls };
  }
  const body = callBody(text);
  if (format.name === 'mistral') {
    const v = tryJson(body);
    const list = Array.isArray(v) ? v : v && typeof v === 'object' ? [v] : undefined;
    const calls = list?.map((x) => toCall(x, format));
    if (!calls || calls.length === 0 || calls.some((c) => !c)) return none;
    return { content: null, toolCalls: calls as ToolCall[] };
  }
  if (!body.startsWith('{')) return none;
  const calls = splitTopLevel(body, ';').map((part) => toCall(tryJson(part.trim()), format, part));
  if (truncated && calls.length > 1 && !calls[calls.length - 1]) calls.pop();
  if (calls.some((c) => !c)) return none;
  return { content: null, toolCalls: calls as ToolCall[] };
}

/** llama3_json / mistral: an output without its leading markers, trimmed (the text of its calls, if any). */
function callBody(text: string): string {
  let body = text.trimStart();
  for (const m of MARKERS) if (body.startsWith(m)) body = body.slice(m.length);
  return body.trim();
}

/** What `settledContent` found: see there. */
export interface Settled {
  /** The number of leading characters of the text that are content. */
  length: number;
  /**
   * The text after them: `open` (may still settle: ask again with more text), `held` (a call may
   * have started: decided by `parseToolCalls` once the output ended), `content` (content, as is
   * everything the output goes on with).
   */
  next: 'open' | 'held' | 'content';
}

/**
 * How much of a streamed output's unsent text is content whatever the model writes next, by the
 * rules of `parseToolCalls`: what it settles is the start of the content that it returns for any
 * continuation. Hermes: the text before a `<tool_call>` (or before a suffix that may start one),
 * unless all of the output so far is blank (null content if a call follows). llama3_json /
 * mistral: all of the output once it does not start (after its markers) with the `{` / `[` of a
 * call, nothing otherwise.
 * @param tail The output's text not sent yet (all of it while `start`).
 * @param start Nothing of the output was sent yet.
 */
export function settledContent(tail: string, format: ToolFormat, start: boolean): Settled {
  if (format.name === 'hermes') {
    const at = tail.indexOf(OPEN);
    const end = at >= 0 ? at : tail.length - heldBack(tail, OPEN);
    return { length: start && tail.slice(0, end).trim() === '' ? 0 : end, next: at >= 0 ? 'held' : 'open' };
  }
  const body = callBody(tail);
  // Still blank, or a marker arriving in pieces.
  if (body === '' || MARKERS.some((m) => m.startsWith(body))) return { length: 0, next: 'open' };
  const opens = format.name === 'mistral' ? '{[' : '{';
  return opens.includes(body[0]!) ? { length: 0, next: 'held' } : { length: tail.length, next: 'content' };
}

/** Length of the longest suffix of `s` that is a proper prefix of `marker` (text to hold back while it may start one). */
export function heldBack(s: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, s.length); n > 0; n--) if (marker.startsWith(s.slice(s.length - n))) return n;
  return 0;
}
