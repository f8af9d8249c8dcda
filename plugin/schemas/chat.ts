/**
 * Zod schema of a `POST /v1/chat/completions` body.
 */
import { z } from 'zod';
import { commonFields } from './common.ts';

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

/** A chat message; `developer` is mapped to `system` when the template is rendered. */
export const MessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(ContentPartSchema)]).nullish(),
  name: z.string().optional(),
  tool_call_id: z.string().optional(),
});

/** `POST /v1/chat/completions`. */
export const ChatCompletionRequestSchema = z
  .object({
    ...commonFields,
    messages: z.array(MessageSchema).min(1),
    max_completion_tokens: z.number().int().min(1).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    tools: z.array(z.unknown()).nullish(),
    response_format: z.object({ type: z.string() }).nullish(),
  })
  .superRefine((b, ctx) => {
    if (b.tools && b.tools.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['tools'], message: 'tool calling is not supported by this server.' });
    }
    if (b.response_format && b.response_format.type !== 'text') {
      ctx.addIssue({
        code: 'custom',
        path: ['response_format', 'type'],
        message: `only "text" is supported, but got "${b.response_format.type}".`,
      });
    }
    if (b.top_logprobs != null && b.top_logprobs > 0 && b.logprobs !== true) {
      ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: '`logprobs` must be true when `top_logprobs` is set.' });
    }
  });

/** A validated chat completions request. */
export type ChatCompletionRequest = z.output<typeof ChatCompletionRequestSchema>;
