/**
 * A Responses API request (plugin/schemas/responses.ts) as the chat completion request it runs as:
 * input items become chat messages (a stored conversation first, for `previous_response_id`),
 * function tools and `text.format` take their chat shapes (vLLM's `structured_outputs` goes as it
 * is), and errors raised on the chat side name the Responses field again (`messages` → `input`,
 * `response_format` → `text.format`, ...).
 *
 * Item mapping (OpenAI's Responses ↔ Chat Completions migration guide):
 *   `instructions`                       → a leading `system` message (not carried to the next turn)
 *   message item `{role, content}`       → `{role, content}` (text parts as chat text parts)
 *   `function_call {call_id, name, arguments}` → `tool_calls[]` of an assistant message (joined to the
 *                                          assistant message right before it, as the model wrote them)
 *   `function_call_output {call_id, output}`   → `{role: "tool", tool_call_id, content}`
 *   `reasoning`                          → skipped (nothing here continues another model's reasoning)
 */
import type { ChatCompletionRequest } from '../schemas/index.ts';
import { wantsLogprobs, type InputItem, type ResponseCreateRequest } from '../schemas/responses.ts';
import { InvalidRequestError, OpenLoraError } from '../errors.ts';
import type { ChatMessage, TextPart } from '../tokenizer.ts';

/** The chat form of a Responses request. */
export interface TranslatedRequest {
  /** The chat completion request to run (validated fields only; `n` 1). */
  chat: ChatCompletionRequest;
  /** The conversation without `instructions`: the stored one, then this request's input (what a follow-up continues). */
  conversation: ChatMessage[];
}

/**
 * Map a Responses request onto a chat completion request.
 * @param history The stored conversation of `previous_response_id` (its input and output as chat messages), or [].
 * @throws InvalidRequestError naming `input[i]...` when a `function_call_output` answers no call,
 *   or a call is left without its output before the next message (OpenAI's pairing rule).
 */
export function toChatRequest(b: ResponseCreateRequest, history: ChatMessage[]): TranslatedRequest {
  const items: InputItem[] = typeof b.input === 'string' ? [{ type: 'message', role: 'user', content: b.input }] : b.input;
  const conversation: ChatMessage[] = [...history];
  // Calls of the last assistant turn still waiting for their outputs: call_id -> where it was made.
  const open = new Map<string, string>();
  const known = new Set<string>();
  for (const m of history) for (const c of m.tool_calls ?? []) known.add(c.id);
  const unanswered = () => {
    const first = open.entries().next();
    if (!first.done) {
      const [id, where] = first.value;
      throw new InvalidRequestError(`No tool output found for function call ${id}: each function_call needs a function_call_output before the next message.`, where);
    }
  };
  // Calls of the stored conversation's last turn may be answered by this input.
  const last = history[history.length - 1];
  for (const c of last?.role === 'assistant' ? (last.tool_calls ?? []) : []) open.set(c.id, 'previous_response_id');
  items.forEach((item, i) => {
    const at = `input[${i}]`;
    switch (item.type) {
      case 'reasoning':
        return;
      case 'message': {
        unanswered();
        conversation.push({ role: item.role, content: typeof item.content === 'string' ? item.content : item.content.map((text): TextPart => ({ type: 'text', text })) });
        return;
      }
      case 'function_call': {
        if (known.has(item.call_id)) throw new InvalidRequestError(`Duplicate function call id ${JSON.stringify(item.call_id)}.`, `${at}.call_id`);
        known.add(item.call_id);
        const call = { id: item.call_id, type: 'function' as const, function: { name: item.name, arguments: item.arguments } };
        const prev = conversation[conversation.length - 1];
        // A call joins the assistant message right before it (text, then calls: one model turn).
        if (prev?.role === 'assistant' && conversation.length > history.length) {
          prev.tool_calls = [...(prev.tool_calls ?? []), call];
        } else {
          unanswered();
          conversation.push({ role: 'assistant', content: null, tool_calls: [call] });
        }
        open.set(item.call_id, at);
        return;
      }
      case 'function_call_output': {
        if (!open.delete(item.call_id)) {
          throw new InvalidRequestError(
            `No function call found for function call output with call_id ${JSON.stringify(item.call_id)} (it must follow its function_call, before the next message).`,
            `${at}.call_id`,
          );
        }
        conversation.push({ role: 'tool', tool_call_id: item.call_id, content: typeof item.output === 'string' ? item.output : item.output.join('') });
        return;
      }
    }
  });
  unanswered();
  if (conversation.length === 0) throw new InvalidRequestError('The input has no message to respond to.', 'input');

  const messages: ChatMessage[] = b.instructions ? [{ role: 'system', content: b.instructions }, ...conversation] : conversation;
  const logprobs = wantsLogprobs(b);
  const format = b.text?.format;
  const choice = b.tool_choice;
  const chat = {
    model: b.model,
    messages,
    n: 1,
    max_completion_tokens: b.max_output_tokens ?? undefined,
    temperature: b.temperature,
    top_p: b.top_p,
    top_k: b.top_k,
    min_p: b.min_p,
    repetition_penalty: b.repetition_penalty,
    presence_penalty: b.presence_penalty,
    frequency_penalty: b.frequency_penalty,
    seed: b.seed,
    stop: b.stop,
    ignore_eos: b.ignore_eos,
    min_tokens: b.min_tokens,
    include_stop_str_in_output: b.include_stop_str_in_output,
    stop_token_ids: b.stop_token_ids,
    logit_bias: b.logit_bias,
    structured_outputs: b.structured_outputs,
    logprobs,
    top_logprobs: logprobs ? (b.top_logprobs ?? 0) : undefined,
    stream: b.stream,
    user: b.user,
    adapters: b.adapters,
    merge: b.merge,
    chat_template_kwargs: b.chat_template_kwargs,
    tools: b.tools?.map((t) => ({ type: 'function' as const, function: { name: t.name, description: t.description, parameters: t.parameters, strict: t.strict } })),
    tool_choice: choice && typeof choice === 'object' ? { type: 'function' as const, function: { name: choice.name } } : choice,
    parallel_tool_calls: b.parallel_tool_calls,
    response_format:
      !format || format.type === 'text'
        ? undefined
        : format.type === 'json_object'
          ? { type: 'json_object' as const }
          : { type: 'json_schema' as const, json_schema: { name: format.name, schema: format.schema, description: format.description, strict: format.strict } },
  } as ChatCompletionRequest;
  return { chat, conversation };
}

/** Chat field paths → the Responses fields they came from. */
const PARAMS: Array<[RegExp, string]> = [
  [/^messages(?=$|[.[])/, 'input'],
  [/^response_format\.json_schema(?=$|[.[])/, 'text.format'],
  [/^response_format(?=$|[.[])/, 'text.format'],
  [/^(max_completion_tokens|max_tokens)$/, 'max_output_tokens'],
  [/^(tools\[\d+\])\.function(?=$|[.[])/, '$1'],
  [/^tool_choice\.function(?=$|[.[])/, 'tool_choice'],
  [/^top_logprobs$/, 'top_logprobs'],
];

/** The Responses name of a chat field path (`messages[3].content` → `input[3].content`; indices may differ with instructions). */
export function responsesParam(param: string): string {
  for (const [re, to] of PARAMS) if (re.test(param)) return param.replace(re, to);
  return param;
}

/** Rethrow an error raised on the chat side with the field renamed for the Responses body (other errors as they are). */
export function renameParam(err: unknown): unknown {
  if (!(err instanceof OpenLoraError) || err.param == null) return err;
  const param = responsesParam(err.param);
  if (param === err.param) return err;
  const out = new OpenLoraError(err.status, err.message.replaceAll(`'${err.param}'`, `'${param}'`), err.type, param, err.code, { cause: err });
  return out;
}
