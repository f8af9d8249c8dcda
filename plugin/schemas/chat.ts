/**
 * Zod schema of a `POST /v1/chat/completions` body.
 */
import { z } from 'zod';
import { renderOptionsOf, renderOptionsProblem } from '../template-kwargs.ts';
import { checkStreamOptions, commonFields } from './common.ts';
import { checkTools, structuredFields, toolFields } from './structured.ts';
import { checkLegacyFunctions, FunctionCallSchema, legacyFunctionFields, legacyMessages, legacyToTools } from './legacy-functions.ts';

/** OpenAI's bounds: at most 2048 messages per request and 128 tool calls per message. */
export const MAX_MESSAGES = 2048;
export const MAX_TOOL_CALLS = 128;

/** One content part; only `{type: "text", text}` is accepted (no images or audio). */
const ContentPartSchema = z
  .object({ type: z.string(), text: z.unknown().optional() })
  .superRefine((p, ctx) => {
    if (p.type !== 'text') {
      ctx.addIssue({ code: 'custom', path: ['type'], message: `only "text" content parts are supported, but got "${p.type}".` });
    } else if (typeof p.text !== 'string') {
      ctx.addIssue({ code: 'custom', path: ['text'], message: 'expected a string.' });
    }
  })
  .transform((p) => ({ type: 'text' as const, text: p.text as string }));

/** One tool call in an assistant message of the history (`arguments`: the JSON text the model wrote). */
const ToolCallSchema = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

/**
 * A chat message; `developer` is mapped to `system` when the template is rendered.
 * As OpenAI: `content` is required (a string or a non-empty array of parts) except on an
 * assistant message that carries `tool_calls`, where it may be null or absent; a `tool` message
 * needs `tool_call_id`.
 */
export const MessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: z.union([z.string(), z.array(ContentPartSchema).min(1)]).nullish(),
    name: z.string().nullish(),
    tool_call_id: z.string().nullish(),
    tool_calls: z.array(ToolCallSchema).max(MAX_TOOL_CALLS).nullish(),
    /** Legacy function calling (./legacy-functions.ts): the assistant's call. */
    function_call: FunctionCallSchema.nullish(),
  })
  .superRefine((m, ctx) => {
    const calls = m.role === 'assistant' && ((m.tool_calls && m.tool_calls.length > 0) || m.function_call != null);
    if (m.content == null && !calls) {
      ctx.addIssue({ code: 'invalid_type', expected: 'string', input: m.content, path: ['content'] });
    }
    if (m.role === 'tool' && m.tool_call_id == null) {
      ctx.addIssue({ code: 'invalid_type', expected: 'string', input: m.tool_call_id, path: ['tool_call_id'] });
    }
    if (m.role === 'function' && m.name == null) {
      ctx.addIssue({ code: 'invalid_type', expected: 'string', input: m.name, path: ['name'] });
    }
  })
  .transform((m) => ({ ...m, name: m.name ?? undefined, tool_call_id: m.tool_call_id ?? undefined }));

/**
 * OpenAI's pairing of tool turns: each `tool` message answers a `tool_call_id` of the assistant
 * message with `tool_calls` before it, and each of those calls is answered.
 */
function checkToolTurns(messages: Array<z.output<typeof MessageSchema>>, ctx: z.core.$RefinementCtx): void {
  let open: { index: number; ids: Set<string> } | undefined;
  const unanswered = () => {
    if (open && open.ids.size > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['messages', open.index, 'role'],
        message:
          "an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. " +
          `The following tool_call_ids did not have response messages: ${[...open.ids].join(', ')}`,
      });
    }
  };
  messages.forEach((m, i) => {
    if (m.role === 'tool') {
      if (!open || !open.ids.delete(m.tool_call_id ?? '')) {
        ctx.addIssue({
          code: 'custom',
          path: ['messages', i, 'role'],
          message: `messages with role 'tool' must be a response to a preceding message with 'tool_calls' (no open call has id ${JSON.stringify(m.tool_call_id)}).`,
        });
      }
      return;
    }
    unanswered();
    open = m.role === 'assistant' && m.tool_calls && m.tool_calls.length > 0 ? { index: i, ids: new Set(m.tool_calls.map((c) => c.id)) } : undefined;
  });
  unanswered();
}

/**
 * vLLM's `chat_template_kwargs`: any JSON object (the type is checked here, the rest with the
 * other render options in `checkRenderFields`); the value is passed on as sent, keys included
 * (a record schema would drop a "__proto__" key silently).
 */
const ChatTemplateKwargsSchema = z.custom<Record<string, unknown>>().superRefine((v, ctx) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) ctx.addIssue({ code: 'invalid_type', expected: 'object', input: v });
});

/**
 * vLLM's chat-template fields (template-kwargs.ts `renderOptionsProblem`): reserved or oversized
 * `chat_template_kwargs`, `continue_final_message` with `add_generation_prompt` true (its
 * default) or without a final assistant message; the issue names the field.
 */
function checkRenderFields(b: Parameters<typeof renderOptionsOf>[0] & { messages: Array<{ role: string }> }, ctx: z.core.$RefinementCtx): void {
  const p = renderOptionsProblem(b.messages, renderOptionsOf(b));
  if (p) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
}

/**
 * Why a request's own `chat_template` is refused: vLLM runs one only when started with
 * `--trust-request-chat-template` (a template is code the server runs), which this server has no
 * switch for.
 */
export const REQUEST_TEMPLATE_REFUSAL =
  "this server does not accept a chat template in the request (vLLM refuses one too unless started with --trust-request-chat-template); the model's own template renders every request: send it without `chat_template`.";

/** vLLM's chat-template fields (template-kwargs.ts), checked by `checkRenderFields`. */
const renderFields = {
  /** vLLM extension: a Jinja template of the request's own; refused (`REQUEST_TEMPLATE_REFUSAL`). */
  chat_template: z.unknown().optional(),
  /** vLLM extension: the template opens the assistant's turn (default true). */
  add_generation_prompt: z.boolean().nullish(),
  /** vLLM extension: the last (assistant) message is left open and continued; needs `add_generation_prompt: false`. */
  continue_final_message: z.boolean().nullish(),
  /** vLLM extension: extra chat-template variables (`{"enable_thinking": false}`). */
  chat_template_kwargs: ChatTemplateKwargsSchema.nullish(),
};

/**
 * The fields of a chat prompt (what the template renders besides the tools), shared by
 * `POST /v1/chat/completions` and the chat form of `POST /tokenize` (./tokenize.ts): checked
 * by `checkChatPrompt`.
 */
export const chatPromptFields = {
  // NOTE(why): the length is checked before any message is parsed or rendered, so a body of
  // hundreds of thousands of tiny messages is refused at once instead of holding the event
  // loop for seconds in the template; 2048 is OpenAI's own bound on `messages`.
  messages: z.array(z.unknown()).max(MAX_MESSAGES).pipe(z.array(MessageSchema).min(1)).transform(legacyMessages),
  ...renderFields,
};

/**
 * Cross-field checks of `chatPromptFields` (zod superRefine helper): a request `chat_template`
 * (refused), the render options (`checkRenderFields`), then the pairing of tool turns
 * (`checkToolTurns`); issues name the field.
 */
export function checkChatPrompt(
  b: Parameters<typeof checkRenderFields>[0] & { messages: Array<z.output<typeof MessageSchema>>; chat_template?: unknown },
  ctx: z.core.$RefinementCtx,
): void {
  if (b.chat_template != null) ctx.addIssue({ code: 'custom', path: ['chat_template'], message: REQUEST_TEMPLATE_REFUSAL });
  checkRenderFields(b, ctx);
  checkToolTurns(b.messages, ctx);
}

/** `POST /v1/chat/completions`. */
export const ChatCompletionRequestSchema = z
  .object({
    ...commonFields,
    messages: chatPromptFields.messages,
    max_completion_tokens: z.number().int().min(1).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    /** vLLM extension: false drops a reasoning model's `<think>` block from the response (plugin/reasoning.ts). */
    include_reasoning: z.boolean().nullish(),
    /** vLLM extension: the tokenizer's special tokens (BOS) added on top of what the template writes (default false). */
    add_special_tokens: z.boolean().nullish(),
    ...structuredFields,
    ...toolFields,
    ...legacyFunctionFields,
    ...renderFields,
  })
  .transform(legacyToTools)
  .superRefine((b, ctx) => {
    checkLegacyFunctions(b, ctx);
    checkTools(b, ctx);
    checkChatPrompt(b, ctx);
    checkStreamOptions(b, ctx);
    if (b.top_logprobs != null && b.top_logprobs > 0 && b.logprobs !== true) {
      ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: '`logprobs` must be true when `top_logprobs` is set.' });
    }
  });

/** A validated chat completions request. */
export type ChatCompletionRequest = z.output<typeof ChatCompletionRequestSchema>;
