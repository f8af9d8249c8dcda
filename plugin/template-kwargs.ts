/**
 * vLLM's chat-template request extensions of `POST /v1/chat/completions` (vllm/entrypoints/
 * openai/protocol.py `ChatCompletionRequest`): `add_generation_prompt`, `continue_final_message`
 * and `chat_template_kwargs`, as the options of a chat render (`ChatRenderOptions`), and the one
 * check of them that both the request schema and the tokenizer apply (`renderOptionsProblem`).
 *
 * `chat_template_kwargs` are extra variables of the template render (Qwen3's
 * `enable_thinking: false`). Their strings are shielded like message text (tokenizer.ts), so they
 * cannot forge special tokens. The names the server sets itself are refused rather than
 * overridden (`RESERVED_TEMPLATE_KWARGS`): the render's own variables, the special-token
 * variables, the two fields above, vLLM's refused `chat_template` / `tokenize`, and the globals
 * of @huggingface/jinja (`true`, `None`, `raise_exception`, ...), which a client value would
 * replace for the whole template.
 */
import { InvalidRequestError } from './errors.ts';
import { jsonDepth } from './json-depth.ts';

/** Special tokens passed to the chat template besides `messages` and `add_generation_prompt` (transformers' special_tokens_map). */
export const TEMPLATE_TOKENS = ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token'] as const;

/** Names a client may not set through `chat_template_kwargs` (400 naming `chat_template_kwargs.<name>`). */
export const RESERVED_TEMPLATE_KWARGS: ReadonlySet<string> = new Set([
  'messages',
  'tools',
  'add_generation_prompt',
  'continue_final_message',
  // vLLM's resolve_chat_template_kwargs refuses these two ("unexpected chat template kwargs").
  'chat_template',
  'tokenize',
  ...TEMPLATE_TOKENS,
  // @huggingface/jinja's globals (setupGlobals) and its `namespace`: the render's variables replace them.
  'true',
  'false',
  'none',
  'True',
  'False',
  'None',
  'raise_exception',
  'range',
  'strftime_now',
  'namespace',
]);

/** Most levels of arrays / objects inside `chat_template_kwargs` (the object itself is level 1). */
export const MAX_TEMPLATE_KWARGS_DEPTH = 16;
/** Most characters of `chat_template_kwargs` as JSON: it goes through the template on every render. */
export const MAX_TEMPLATE_KWARGS_CHARS = 65536;

/**
 * How a chat prompt is rendered besides its messages and tools; each option mirrors the request
 * field of the same name (vLLM's), and leaving it out means the field's default.
 */
export interface ChatRenderOptions {
  /** `add_generation_prompt` (default true): the template opens the assistant's turn. */
  addGenerationPrompt?: boolean;
  /**
   * `continue_final_message` (default false): the last message (an assistant message) is left
   * open, its content a prefix of the reply; `addGenerationPrompt` then defaults to false (true is refused).
   */
  continueFinalMessage?: boolean;
  /** `chat_template_kwargs`: extra template variables (a JSON object), strings shielded. */
  templateKwargs?: Record<string, unknown> | null;
}

/** The render options of a chat body's fields (absent or null fields: their defaults). */
export function renderOptionsOf(body: {
  add_generation_prompt?: boolean | null;
  continue_final_message?: boolean | null;
  chat_template_kwargs?: Record<string, unknown> | null;
}): ChatRenderOptions {
  return {
    addGenerationPrompt: body.add_generation_prompt ?? undefined,
    continueFinalMessage: body.continue_final_message ?? undefined,
    templateKwargs: body.chat_template_kwargs ?? undefined,
  };
}

/** What is wrong with a chat render's options: the field (`path`, of the request body) and why. */
export interface RenderOptionsProblem {
  /** Path of the field at fault in the request body (`['chat_template_kwargs', 'messages']`). */
  path: Array<string | number>;
  message: string;
  /** Set when the field has the wrong JSON type (`expected` names the type, as zod's invalid_type). */
  expected?: 'object';
}

/** Whether `v` is a JSON object (not null, not an array). */
function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}


/**
 * The first problem of a chat render's options for `messages` (undefined: none):
 * `chat_template_kwargs` not an object, over MAX_TEMPLATE_KWARGS_DEPTH levels or
 * MAX_TEMPLATE_KWARGS_CHARS characters of JSON, or setting a RESERVED_TEMPLATE_KWARGS name;
 * `continue_final_message` with `add_generation_prompt` true (its default: vLLM's message, path
 * `add_generation_prompt`) or with a last message that is not the assistant's.
 */
export function renderOptionsProblem(messages: ReadonlyArray<{ role: string }>, o: ChatRenderOptions): RenderOptionsProblem | undefined {
  const kw = o.templateKwargs;
  if (kw != null) {
    if (!isObject(kw)) return { path: ['chat_template_kwargs'], message: 'expected an object.', expected: 'object' };
    for (const key of Object.keys(kw)) {
      if (RESERVED_TEMPLATE_KWARGS.has(key)) {
        return {
          path: ['chat_template_kwargs', key],
          message: `"${key}" is set by the server for the chat template (the messages, tools, generation prompt, special tokens or a template built-in); it cannot be passed in \`chat_template_kwargs\`.`,
        };
      }
    }
    const depth = jsonDepth(kw, MAX_TEMPLATE_KWARGS_DEPTH);
    if (depth > MAX_TEMPLATE_KWARGS_DEPTH) {
      return { path: ['chat_template_kwargs'], message: `expected at most ${MAX_TEMPLATE_KWARGS_DEPTH} levels of nesting, but got more.` };
    }
    const chars = JSON.stringify(kw).length;
    if (chars > MAX_TEMPLATE_KWARGS_CHARS) {
      return { path: ['chat_template_kwargs'], message: `expected at most ${MAX_TEMPLATE_KWARGS_CHARS} characters as JSON, but got ${chars}.` };
    }
  }
  if (o.continueFinalMessage === true) {
    // Left out, add_generation_prompt follows continue_final_message (vLLM's check sees only
    // fields the client sent); set to true explicitly it is vLLM's 400.
    if (o.addGenerationPrompt === true) {
      return { path: ['add_generation_prompt'], message: 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.' };
    }
    const last = messages[messages.length - 1];
    if (last && last.role !== 'assistant') {
      return {
        path: ['continue_final_message'],
        message: `\`continue_final_message\` continues the last message, which must be an assistant message, but messages[${messages.length - 1}] has role "${last.role}".`,
      };
    }
  }
  return undefined;
}

/**
 * Throw the 400 for `renderOptionsProblem(messages, o)`, if any.
 * @throws InvalidRequestError (400) whose `param` is the field's path (`chat_template_kwargs.tools`,
 *   `add_generation_prompt`, `continue_final_message`).
 */
export function checkRenderOptions(messages: ReadonlyArray<{ role: string }>, o: ChatRenderOptions): void {
  const p = renderOptionsProblem(messages, o);
  if (!p) return;
  const param = p.path.join('.');
  throw new InvalidRequestError(p.expected ? `Invalid type for '${param}': ${p.message}` : `Invalid value for '${param}': ${p.message}`, param);
}
