/**
 * The Responses API's output: the `response` object, its output items, and the streamed events
 * (openai-node `resources/responses/responses.d.ts`: Response, ResponseOutputMessage,
 * ResponseFunctionToolCall, ResponseStreamEvent; the event order of OpenAI's streaming guide).
 *
 * Stream, per response: `response.created`, `response.in_progress`; per output item
 * `response.output_item.added`, then for a message `response.content_part.added`,
 * `response.output_text.delta`..., `response.output_text.done`, `response.content_part.done`, or
 * for a function call `response.function_call_arguments.delta`...,
 * `response.function_call_arguments.done`; then `response.output_item.done`; last
 * `response.completed` (or `response.incomplete` when `max_output_tokens` cut it). Every event
 * carries `sequence_number` from 0 up. There is no `[DONE]` line (OpenAI sends none here).
 */
import { randomUUID } from 'node:crypto';
import type { ChatTokenLogprob } from '../logprobs.ts';
import type { Usage } from '../generate.ts';
import type { ResponseCreateRequest } from '../schemas/responses.ts';
import type { ChatMessage, ToolCall } from '../tokenizer.ts';

/** An id of OpenAI's shape: prefix + 48 hex characters (`resp_`, `msg_`, `fc_`). */
export function itemId(prefix: string): string {
  return prefix + (randomUUID() + randomUUID()).replaceAll('-', '').slice(0, 48);
}

/** One output item (message or function call) as the API returns it. */
export type OutputItem =
  | {
      id: string;
      type: 'message';
      status: 'in_progress' | 'completed' | 'incomplete';
      role: 'assistant';
      content: Array<{ type: 'output_text'; text: string; annotations: []; logprobs: ChatTokenLogprob[] }>;
    }
  | { id: string; type: 'function_call'; status: 'in_progress' | 'completed' | 'incomplete'; call_id: string; name: string; arguments: string }
  | { id: string; type: 'reasoning'; status: 'in_progress' | 'completed' | 'incomplete'; summary: []; content: Array<{ type: 'reasoning_text'; text: string }> };

/** The response's status and why it is incomplete, from the choice's finish reason. */
export function statusOf(finish: string | null): { status: 'completed' | 'incomplete'; incomplete_details: { reason: 'max_output_tokens' } | null } {
  return finish === 'length' ? { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } } : { status: 'completed', incomplete_details: null };
}

/** OpenAI's ResponseUsage from the generation's counts (no prefix-cache or reasoning split is reported: 0). */
export function responseUsage(u: Usage) {
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.total_tokens,
  };
}

/** The fixed part of a response object: what the request asked for, echoed as OpenAI does. */
export interface ResponseHead {
  id: string;
  created_at: number;
  body: ResponseCreateRequest;
}

/**
 * A `response` object.
 * @param status `in_progress` while streaming, then `completed` / `incomplete` / `failed`.
 */
export function responseObject(
  head: ResponseHead,
  status: string,
  output: OutputItem[],
  usage: ReturnType<typeof responseUsage> | null,
  incomplete: { reason: string } | null = null,
  error: { code: string; message: string } | null = null,
): Record<string, unknown> {
  const b = head.body;
  return {
    id: head.id,
    object: 'response',
    created_at: head.created_at,
    status,
    background: false,
    error,
    incomplete_details: incomplete,
    instructions: b.instructions ?? null,
    max_output_tokens: b.max_output_tokens ?? null,
    model: b.model,
    output,
    parallel_tool_calls: b.parallel_tool_calls ?? true,
    previous_response_id: b.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: b.store ?? true,
    temperature: b.temperature ?? 1,
    text: { format: b.text?.format ?? { type: 'text' } },
    tool_choice: b.tool_choice ?? 'auto',
    tools: (b.tools ?? []).map((t) => ({ type: 'function', name: t.name, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict ?? true })),
    top_logprobs: b.top_logprobs ?? 0,
    top_p: b.top_p ?? 1,
    truncation: b.truncation ?? 'disabled',
    usage,
    user: b.user ?? null,
    metadata: b.metadata ?? {},
  };
}

/**
 * Output items of a finished choice: the reasoning (a reasoning model's `<think>` block, when it
 * wrote one), a message with the text (when there is text, or nothing else), then one
 * function_call item per call.
 */
export function outputItems(text: string | null, calls: ToolCall[], logprobs: ChatTokenLogprob[], finish: string | null, reasoning: string | null = null): OutputItem[] {
  const status = finish === 'length' ? 'incomplete' : 'completed';
  const items: OutputItem[] = [];
  if (reasoning !== null) {
    items.push({ id: itemId('rs_'), type: 'reasoning', status: text || calls.length > 0 ? 'completed' : status, summary: [], content: [{ type: 'reasoning_text', text: reasoning }] });
  }
  if ((text ?? '') !== '' || (calls.length === 0 && reasoning === null)) {
    items.push({ id: itemId('msg_'), type: 'message', status, role: 'assistant', content: [{ type: 'output_text', text: text ?? '', annotations: [], logprobs }] });
  }
  for (const c of calls) items.push({ id: itemId('fc_'), type: 'function_call', status: 'completed', call_id: c.id, name: c.function.name, arguments: c.function.arguments });
  return items;
}

/** The output items as the chat messages a follow-up turn sees (one assistant message). */
export function outputMessages(items: OutputItem[]): ChatMessage[] {
  let text: string | null = null;
  const calls: ToolCall[] = [];
  for (const it of items) {
    // Reasoning is not replayed: the templates of reasoning models drop earlier turns' blocks.
    if (it.type === 'reasoning') continue;
    if (it.type === 'message') text = (text ?? '') + it.content.map((p) => p.text).join('');
    else calls.push({ id: it.call_id, type: 'function', function: { name: it.name, arguments: it.arguments } });
  }
  return [calls.length > 0 ? { role: 'assistant', content: text || null, tool_calls: calls } : { role: 'assistant', content: text ?? '' }];
}

/** A streamed chat-style delta (`{content}` or `{tool_calls: [{index, id?, function: {name?, arguments?}}]}`). */
type ChatDelta = Record<string, unknown>;

/**
 * The event side of one streamed response: chat-style deltas (the tool parser's) in, Responses
 * events out through `emit(type, payload)`; `sequence_number` is added here.
 */
export class ResponseEvents {
  private seq = 0;
  readonly items: OutputItem[] = [];
  private message: Extract<OutputItem, { type: 'message' }> | undefined;
  private thinking: Extract<OutputItem, { type: 'reasoning' }> | undefined;
  private readonly calls = new Map<number, Extract<OutputItem, { type: 'function_call' }>>();
  private current: OutputItem | undefined;

  constructor(
    private readonly head: ResponseHead,
    private readonly emit: (type: string, payload: Record<string, unknown>) => void,
  ) {}

  private send(type: string, payload: Record<string, unknown>): void {
    this.emit(type, { type, sequence_number: this.seq++, ...payload });
  }

  /** `response.created` and `response.in_progress`. */
  start(): void {
    const r = responseObject(this.head, 'in_progress', [], null);
    this.send('response.created', { response: r });
    this.send('response.in_progress', { response: r });
  }

  private index(it: OutputItem): number {
    return this.items.indexOf(it);
  }

  /** The open message item, opened (with its empty output_text part) if there is none. */
  private openMessage(): Extract<OutputItem, { type: 'message' }> {
    if (this.message) return this.message;
    this.closeCurrent('completed');
    const m: Extract<OutputItem, { type: 'message' }> = { id: itemId('msg_'), type: 'message', status: 'in_progress', role: 'assistant', content: [] };
    this.items.push(m);
    this.message = m;
    this.current = m;
    this.send('response.output_item.added', { output_index: this.index(m), item: structuredClone(m) });
    m.content.push({ type: 'output_text', text: '', annotations: [], logprobs: [] });
    this.send('response.content_part.added', { item_id: m.id, output_index: this.index(m), content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    return m;
  }

  /** Reasoning text: the open reasoning item's, opening one (and its reasoning_text part) if needed. */
  reasoning(delta: string): void {
    if (delta === '') return;
    let r = this.thinking;
    if (!r) {
      this.closeCurrent('completed');
      r = { id: itemId('rs_'), type: 'reasoning', status: 'in_progress', summary: [], content: [] };
      this.items.push(r);
      this.thinking = r;
      this.current = r;
      this.send('response.output_item.added', { output_index: this.index(r), item: structuredClone(r) });
      r.content.push({ type: 'reasoning_text', text: '' });
      this.send('response.content_part.added', { item_id: r.id, output_index: this.index(r), content_index: 0, part: { type: 'reasoning_text', text: '' } });
    }
    r.content[0]!.text += delta;
    this.send('response.reasoning_text.delta', { item_id: r.id, output_index: this.index(r), content_index: 0, delta });
  }

  /** Text (and its tokens' logprobs) of the open message item, opening one if needed. */
  text(delta: string, logprobs: ChatTokenLogprob[] = []): void {
    if (delta === '' && logprobs.length === 0) return;
    const m = this.openMessage();
    const part = m.content[0]!;
    part.text += delta;
    part.logprobs.push(...logprobs);
    this.send('response.output_text.delta', { item_id: m.id, output_index: this.index(m), content_index: 0, delta, logprobs });
  }

  /** One chat-style delta of the tool parser (prose or a call piece). */
  chatDelta(d: ChatDelta, logprobs: ChatTokenLogprob[] = []): void {
    if (typeof d.content === 'string') return this.text(d.content, logprobs);
    for (const tc of (d.tool_calls as Array<{ index: number; id?: string; function: { name?: string; arguments?: string } }> | undefined) ?? []) {
      let call = this.calls.get(tc.index);
      if (!call) {
        this.closeCurrent('completed');
        call = { id: itemId('fc_'), type: 'function_call', status: 'in_progress', call_id: tc.id ?? itemId('call_'), name: tc.function.name ?? '', arguments: '' };
        this.calls.set(tc.index, call);
        this.items.push(call);
        this.current = call;
        this.send('response.output_item.added', { output_index: this.index(call), item: { ...call } });
      }
      const args = tc.function.arguments ?? '';
      if (args !== '') {
        call.arguments += args;
        this.send('response.function_call_arguments.delta', { item_id: call.id, output_index: this.index(call), delta: args });
      }
    }
  }

  /** Close the open item with its `.done` events. */
  private closeCurrent(status: 'completed' | 'incomplete'): void {
    const it = this.current;
    if (!it) return;
    this.current = undefined;
    const output_index = this.index(it);
    if (it.type === 'message') {
      this.message = undefined;
      const part = it.content[0]!;
      this.send('response.output_text.done', { item_id: it.id, output_index, content_index: 0, text: part.text, logprobs: part.logprobs });
      this.send('response.content_part.done', { item_id: it.id, output_index, content_index: 0, part: structuredClone(part) });
    } else if (it.type === 'reasoning') {
      this.thinking = undefined;
      const part = it.content[0]!;
      this.send('response.reasoning_text.done', { item_id: it.id, output_index, content_index: 0, text: part.text });
      this.send('response.content_part.done', { item_id: it.id, output_index, content_index: 0, part: structuredClone(part) });
    } else {
      this.send('response.function_call_arguments.done', { item_id: it.id, output_index, arguments: it.arguments });
    }
    it.status = status;  // the item open when max_output_tokens cut is incomplete (a call's arguments too)
    this.send('response.output_item.done', { output_index, item: structuredClone(it) });
  }

  /**
   * The choice ended: close the open item (an empty message when nothing was written) and send
   * `response.completed` / `response.incomplete` with the whole response.
   * @returns the final response object (what the store keeps).
   */
  finish(finish: string | null, usage: Usage): Record<string, unknown> {
    if (this.items.length === 0) this.openMessage();  // nothing at all: one empty message (a cut block is its reasoning alone)
    const { status, incomplete_details } = statusOf(finish);
    this.closeCurrent(status === 'incomplete' ? 'incomplete' : 'completed');
    const r = responseObject(this.head, status, this.items, responseUsage(usage), incomplete_details);
    this.send(status === 'completed' ? 'response.completed' : 'response.incomplete', { response: r });
    return r;
  }

  /** The response failed after the stream started: `response.failed`, then an `error` event. @returns the failed response. */
  fail(error: { code: string | null; message: string; param: string | null; type: string }): Record<string, unknown> {
    const r = responseObject(this.head, 'failed', this.items, null, null, { code: error.code ?? 'server_error', message: error.message });
    this.send('response.failed', { response: r });
    // `error` as OpenAI sends it; the nested copy makes openai-node raise it as an APIError.
    this.send('error', { code: error.code, message: error.message, param: error.param, error });
    return r;
  }
}
