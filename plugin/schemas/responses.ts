/**
 * Zod schema of a `POST /v1/responses` body (OpenAI's Responses API), the part of it this server
 * runs: text in and out, function tools, structured output (`text.format`), sampling, and
 * conversation state by `previous_response_id`.
 *
 * As for the other endpoints, unknown keys are stripped and explicit nulls accepted; what cannot be
 * honoured (images and files in the input, hosted tools, `background`, `conversation`, stored
 * prompts, and the chat completions fields the Responses API has no place for: `CHAT_ONLY`) is
 * refused with a 400 naming the field rather than ignored. vLLM's `structured_outputs` is
 * enforced as on chat (not with `text.format`). Shapes follow openai-node's
 * `resources/responses/responses.d.ts` (ResponseCreateParamsBase, ResponseInputItem, FunctionTool,
 * ResponseTextConfig).
 */
import { z } from 'zod';
import { REQUEST_TEMPLATE_REFUSAL } from './chat.ts';
import { AdapterSetSchema, commonFields, StopSchema } from './common.ts';
import { FunctionNameSchema, JsonSchemaObject, SchemaNameSchema, StructuredOutputsSchema } from './structured.ts';
import { MergeOptionsSchema } from '../../adapters/composition.ts';

/** Most input items one request may carry (OpenAI's chat bound on messages, applied to items). */
export const MAX_INPUT_ITEMS = 2048;


/** One content part of an input message: text only (`input_text`, or `output_text` / `refusal` replayed from an output). */
const ContentPartSchema = z
  .object({ type: z.string(), text: z.unknown().optional(), refusal: z.unknown().optional() })
  .superRefine((p, ctx) => {
    if (p.type === 'input_text' || p.type === 'output_text') {
      if (typeof p.text !== 'string') ctx.addIssue({ code: 'custom', path: ['text'], message: 'expected a string.' });
    } else if (p.type === 'refusal') {
      if (typeof p.refusal !== 'string') ctx.addIssue({ code: 'custom', path: ['refusal'], message: 'expected a string.' });
    } else {
      ctx.addIssue({
        code: 'custom',
        path: ['type'],
        message: `only text content parts ("input_text", "output_text", "refusal") are supported, but got ${JSON.stringify(p.type)}.`,
      });
    }
  })
  .transform((p) => (p.type === 'refusal' ? (p.refusal as string) : (p.text as string)));

/** A message item (`type` "message" or absent: OpenAI's EasyInputMessage). */
const MessageItemSchema = z.object({
  type: z.literal('message'),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(ContentPartSchema).max(1024)]),
  id: z.string().nullish(),
});

/** A function call the model made (replayed from an earlier output). */
const FunctionCallItemSchema = z.object({
  type: z.literal('function_call'),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
  id: z.string().nullish(),
});

/** The result of a function call, for the model to read. */
const FunctionCallOutputItemSchema = z.object({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(ContentPartSchema).max(1024)]),
  id: z.string().nullish(),
});

/** A reasoning item replayed from another provider's output: this server has none to continue, so it is skipped. */
const ReasoningItemSchema = z.object({ type: z.literal('reasoning') });

const ITEM_TYPES = ['message', 'function_call', 'function_call_output', 'reasoning'] as const;

/** One input item. A role without `type` is a message; other item types name themselves in the 400. */
export const InputItemSchema = z.preprocess(
  (v) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const o = v as Record<string, unknown>;
    return o.type === undefined && 'role' in o ? { ...o, type: 'message' } : o;
  },
  z
    .object({ type: z.string() })
    .loose()
    .superRefine((o, ctx) => {
      if (!(ITEM_TYPES as readonly string[]).includes(o.type)) {
        ctx.addIssue({
          code: 'custom',
          path: ['type'],
          message: `input items of type ${JSON.stringify(o.type)} are not supported (supported: ${ITEM_TYPES.join(', ')}; this server runs function tools only).`,
        });
      }
    })
    .pipe(z.discriminatedUnion('type', [MessageItemSchema, FunctionCallItemSchema, FunctionCallOutputItemSchema, ReasoningItemSchema])),
);

/** A validated input item. */
export type InputItem = z.output<typeof InputItemSchema>;

/** A function tool (Responses shape: the function's fields at the top level). */
const FunctionToolSchema = z.object({
  type: z.literal('function'),
  name: FunctionNameSchema,
  description: z.string().nullish(),
  parameters: JsonSchemaObject.nullish(),
  strict: z.boolean().nullish(),
});

/** Tools: function tools only; a hosted tool (web search, file search, ...) names its type in the 400. */
const ToolSchema = z
  .object({ type: z.string() })
  .loose()
  .superRefine((t, ctx) => {
    if (t.type !== 'function') {
      ctx.addIssue({ code: 'custom', path: ['type'], message: `tools of type ${JSON.stringify(t.type)} are not supported (this server runs function tools only).` });
    }
  })
  .pipe(FunctionToolSchema);

/** `tool_choice`: a mode, or one named function. */
const ToolChoiceSchema = z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), name: z.string().min(1) })]);

/** `text.format` (ResponseFormatTextConfig). */
const TextFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    name: SchemaNameSchema,
    schema: JsonSchemaObject,
    description: z.string().nullish(),
    strict: z.boolean().nullish(),
  }),
]);

/**
 * Fields of chat completions (vLLM's extensions there, and chat's own `response_format`) that the
 * Responses API does not take, refused when set with what to send instead: unknown keys are
 * stripped, and these would otherwise be dropped while the client expects their effect.
 */
const CHAT_ONLY = {
  response_format: 'the Responses API takes the output format as `text.format`.',
  guided_json: 'use `text.format` (json_schema) or `structured_outputs.json`.',
  guided_regex: 'use `structured_outputs.regex`.',
  guided_choice: 'use `structured_outputs.choice`.',
  guided_grammar: 'use `structured_outputs.grammar`.',
  chat_template: REQUEST_TEMPLATE_REFUSAL,
  add_generation_prompt: 'the Responses API always opens the assistant turn (chat completions only).',
  continue_final_message: 'assistant prefill is chat completions only.',
  prompt_logprobs: 'prompt logprobs are chat completions and completions only.',
  include_reasoning: 'a reasoning model\'s reasoning is its own `reasoning` output item here (chat completions only).',
  add_special_tokens: 'chat completions only.',
} as const;

/** The CHAT_ONLY fields, accepted by the schema so that the refinement can refuse them by name. */
const chatOnlyFields = Object.fromEntries(Object.keys(CHAT_ONLY).map((k) => [k, z.unknown().optional()])) as { [K in keyof typeof CHAT_ONLY]: z.ZodOptional<z.ZodUnknown> };

/** Fields refused when set: they ask for what this server does not keep or run. */
function refuseSet(ctx: z.RefinementCtx, path: string, set: boolean, why: string): void {
  if (set) ctx.addIssue({ code: 'custom', path: [path], message: why });
}

/** `POST /v1/responses`. */
export const ResponseCreateRequestSchema = z
  .object({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(z.unknown()).max(MAX_INPUT_ITEMS).pipe(z.array(InputItemSchema))]),
    instructions: z.string().nullish(),
    previous_response_id: z.string().min(1).nullish(),
    tools: z.array(ToolSchema).max(128).nullish(),
    tool_choice: ToolChoiceSchema.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    text: z.object({ format: TextFormatSchema.nullish() }).nullish(),
    max_output_tokens: z.number().int().min(1).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().gt(0).max(1).nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    include: z.array(z.string()).max(32).nullish(),
    store: z.boolean().nullish(),
    stream: z.boolean().nullish(),
    metadata: z
      .record(z.string().max(64), z.string().max(512))
      .refine((m) => Object.keys(m).length <= 16, { error: 'expected at most 16 key-value pairs.' })
      .nullish(),
    user: z.string().nullish(),
    truncation: z.enum(['auto', 'disabled']).nullish(),
    background: z.boolean().nullish(),
    conversation: z.unknown().optional(),
    prompt: z.unknown().optional(),
    // vLLM's sampling extensions, as on the other endpoints.
    top_k: z.number().int().min(-1).nullish(),
    min_p: z.number().min(0).max(1).nullish(),
    repetition_penalty: z.number().min(1e-6).max(1e6).nullish(),
    presence_penalty: z.number().min(-2).max(2).nullish(),
    frequency_penalty: z.number().min(-2).max(2).nullish(),
    seed: z.number().int().nullish(),
    stop: StopSchema.nullish(),
    ignore_eos: z.boolean().nullish(),
    min_tokens: z.number().int().min(0).nullish(),
    include_stop_str_in_output: commonFields.include_stop_str_in_output,
    stop_token_ids: commonFields.stop_token_ids,
    logit_bias: commonFields.logit_bias,
    /** vLLM's output constraints (as on chat; vLLM's Responses API takes them too); not with `text.format`. */
    structured_outputs: StructuredOutputsSchema.nullish(),
    /** vLLM's chat template variables (Qwen3's `enable_thinking`), checked as on chat completions. */
    chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
    adapters: AdapterSetSchema.nullish(),
    merge: MergeOptionsSchema.partial().nullish(),
    ...chatOnlyFields,
  })
  .superRefine((b, ctx) => {
    for (const [field, why] of Object.entries(CHAT_ONLY)) refuseSet(ctx, field, b[field as keyof typeof CHAT_ONLY] != null, `not supported on the Responses API: ${why}`);
    const format = b.text?.format;
    // vLLM: "Cannot specify both structured_outputs and text.format".
    refuseSet(ctx, 'structured_outputs', b.structured_outputs != null && format != null && format.type !== 'text', 'cannot be combined with `text.format`: give one output constraint.');
    refuseSet(ctx, 'background', b.background === true, 'background responses are not supported; send the request without `background` (or stream it).');
    refuseSet(ctx, 'conversation', b.conversation != null, 'conversations are not kept by this server; use `previous_response_id` or send the whole input.');
    refuseSet(ctx, 'prompt', b.prompt != null, 'stored prompt templates are not supported; send `instructions` and `input`.');
    if (Array.isArray(b.input) && b.input.length === 0 && !b.previous_response_id) {
      ctx.addIssue({ code: 'custom', path: ['input'], message: 'expected at least one input item.' });
    }
    const names = (b.tools ?? []).map((t) => t.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['tools', i, 'name'], message: `duplicate tool name "${n}".` });
    });
    const choice = b.tool_choice;
    if (choice === 'required' || (typeof choice === 'object' && choice !== null)) {
      if (names.length === 0) ctx.addIssue({ code: 'custom', path: ['tool_choice'], message: `tool_choice ${JSON.stringify(choice)} needs \`tools\`.` });
      else if (typeof choice === 'object' && !names.includes(choice.name)) {
        ctx.addIssue({ code: 'custom', path: ['tool_choice', 'name'], message: `no tool named "${choice.name}" in \`tools\` (${names.join(', ')}).` });
      }
    }
  });

/** A validated Responses request. */
export type ResponseCreateRequest = z.output<typeof ResponseCreateRequestSchema>;

/** Whether the request asks for output-token logprobs (`include` or `top_logprobs`). */
export function wantsLogprobs(b: ResponseCreateRequest): boolean {
  return b.top_logprobs != null || (b.include ?? []).includes('message.output_text.logprobs');
}
