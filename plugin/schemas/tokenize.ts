/**
 * Zod schemas of vLLM's tokenizer endpoints (vllm/entrypoints/openai/protocol.py
 * `TokenizeCompletionRequest`, `TokenizeChatRequest`, `DetokenizeRequest`): `POST /tokenize` in
 * its two forms and `POST /detokenize` (plugin/routes/tokenize.ts).
 *
 * As the other schemas, optional fields also take `null` and unknown keys are stripped. `model`
 * is required, as on /v1 (vLLM's may be left out when it serves one model).
 */
import { z } from 'zod';
import { chatPromptFields, checkChatPrompt } from './chat.ts';
import { InvalidRequestError } from '../errors.ts';
import { parseRequest } from './issues.ts';
import { checkTools, toolFields } from './structured.ts';

/** Fields of both `POST /tokenize` forms. */
const tokenizeFields = {
  model: z.string().min(1),
  /** vLLM: also answer each token's vocabulary string (`token_strs`). */
  return_token_strs: z.boolean().nullish(),
};

/** `POST /tokenize`, completion form: one prompt string, tokenized as `/v1/completions` does. */
export const TokenizeCompletionRequestSchema = z.object({
  ...tokenizeFields,
  prompt: z.string(),
  /** The post-processor's special tokens (BOS) are added (default true). */
  add_special_tokens: z.boolean().nullish(),
});

/**
 * `POST /tokenize`, chat form: the chat prompt of `/v1/chat/completions` (messages, vLLM's
 * template fields, `tools`), checked as there (render options, tool turns, tool names).
 */
export const TokenizeChatRequestSchema = z
  .object({
    ...tokenizeFields,
    ...chatPromptFields,
    tools: toolFields.tools,
    /** Special tokens (BOS) added on top of what the template writes (default false). */
    add_special_tokens: z.boolean().nullish(),
  })
  .superRefine((b, ctx) => {
    checkTools(b, ctx);
    checkChatPrompt(b, ctx);
  });

/**
 * Most ids one `/detokenize` may decode: above any context served here (Llama 3.1's 131072), and
 * bounded because decoding runs on the event loop (2M ids held every stream for ~1 s).
 */
export const MAX_DETOKENIZE_TOKENS = 262144;

/** `POST /detokenize`: token ids back to text. */
export const DetokenizeRequestSchema = z.object({
  model: z.string().min(1),
  tokens: z.array(z.number().int().min(0)).max(MAX_DETOKENIZE_TOKENS),
});

/** A validated `POST /tokenize` body, tagged with its form. */
export type TokenizeRequest =
  | ({ form: 'completion' } & z.output<typeof TokenizeCompletionRequestSchema>)
  | ({ form: 'chat' } & z.output<typeof TokenizeChatRequestSchema>);

/** A validated `POST /detokenize` body. */
export type DetokenizeRequest = z.output<typeof DetokenizeRequestSchema>;

/**
 * Validate a `POST /tokenize` body: with `messages` it is the chat form, else the completion form
 * (vLLM's union of the two).
 * @throws InvalidRequestError (400) naming the first bad field (`prompt` when neither form's
 *   field is there, `messages[0].content`, `add_generation_prompt`, ...), or naming `prompt`
 *   when the body has both `prompt` and `messages`.
 */
export function parseTokenizeRequest(input: unknown): TokenizeRequest {
  const fields = input !== null && typeof input === 'object' && !Array.isArray(input) ? (input as Record<string, unknown>) : undefined;
  if (fields?.messages !== undefined) {
    if (fields.prompt !== undefined) {
      throw new InvalidRequestError("Invalid request: give either 'prompt' (the completion form) or 'messages' (the chat form), not both.", 'prompt');
    }
    return { form: 'chat', ...parseRequest(TokenizeChatRequestSchema, input) };
  }
  return { form: 'completion', ...parseRequest(TokenizeCompletionRequestSchema, input) };
}
