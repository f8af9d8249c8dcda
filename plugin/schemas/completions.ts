/**
 * Zod schema of a `POST /v1/completions` body.
 */
import { z } from 'zod';
import { checkStreamOptions, commonFields } from './common.ts';
import { structuredFields } from './structured.ts';

const TokenIds = z.array(z.number().int().min(0)).min(1);

/** `prompt`: a string, a list of strings, a list of token ids, or a list of token id lists. */
export const PromptSchema = z.union([z.string(), z.array(z.string()).min(1), TokenIds, z.array(TokenIds).min(1)]);

/** `POST /v1/completions`. */
export const CompletionRequestSchema = z
  .object({
    ...commonFields,
    prompt: PromptSchema,
    /** Legacy logprobs: how many alternatives per token, 0..5. */
    logprobs: z.number().int().min(0).max(5).nullish(),
    echo: z.boolean().nullish(),
    /** As commonFields', and 0 with `echo` (vLLM: the prompt alone, e.g. to score it with `logprobs`). */
    max_tokens: z.number().int().min(0).nullish(),
    suffix: z.string().nullish(),
    best_of: z.number().int().min(1).nullish(),
    ...structuredFields,
  })
  .superRefine((b, ctx) => {
    checkStreamOptions(b, ctx);
    if (b.max_tokens === 0 && !b.echo) {
      ctx.addIssue({ code: 'custom', path: ['max_tokens'], message: 'max_tokens must be at least 1 (0 only with echo).' });
    }
    if (b.suffix) ctx.addIssue({ code: 'custom', path: ['suffix'], message: 'insertion (suffix) is not supported.' });
    if (b.best_of != null && b.best_of !== (b.n ?? 1)) {
      ctx.addIssue({ code: 'custom', path: ['best_of'], message: 'best_of other than n is not supported.' });
    }
  });

/** A validated completions request. */
export type CompletionRequest = z.output<typeof CompletionRequestSchema>;
