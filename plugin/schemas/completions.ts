/**
 * Zod schema of a `POST /v1/completions` body.
 */
import { z } from 'zod';
import { checkStreamOptions, commonFields } from './common.ts';
import { structuredFields } from './structured.ts';

const TokenIds = z.array(z.number().int().min(0)).min(1);

/** The four forms of `prompt`: a string, a list of strings, a list of token ids, a list of token id lists. */
const PromptForms = z.union([z.string(), z.array(z.string()).min(1), TokenIds, z.array(TokenIds).min(1)]);

/** Most items (token ids over every prompt, or strings) one `prompt` may hold: more than any served context. */
export const MAX_PROMPT_ITEMS = 1 << 20;
/** Lists up to this long are checked by the zod union itself (its messages); longer ones by promptProblem. */
const UNION_ITEMS = 4096;

const isTokenId = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/**
 * For a list prompt: where it first breaks its form and why (the form is its first item's), or
 * null when it is well-formed; `items` counts every id or string. NOTE(why): a failed branch of the
 * zod union over a long list builds an issue per element (a million token ids: seconds of the
 * event loop, every stream stalled), so long lists are walked here once instead.
 */
function promptProblem(v: unknown[]): { path: number[]; message: string } | null {
  let items = 0;
  const tooMany = (path: number[]) => ({ path, message: `a prompt may hold at most ${MAX_PROMPT_ITEMS} token ids or strings` });
  if (typeof v[0] === 'string') {
    if (v.length > MAX_PROMPT_ITEMS) return tooMany([]);
    const j = v.findIndex((x) => typeof x !== 'string');
    return j < 0 ? null : { path: [j], message: 'expected a string like the first item' };
  }
  if (!Array.isArray(v[0])) {
    if (v.length > MAX_PROMPT_ITEMS) return tooMany([]);
    const j = v.findIndex((x) => !isTokenId(x));
    return j < 0 ? null : { path: [j], message: 'expected a token id (an integer >= 0)' };
  }
  for (let i = 0; i < v.length; i++) {
    const l = v[i];
    if (!Array.isArray(l) || l.length === 0) return { path: [i], message: 'expected a non-empty list of token ids like the first item' };
    if ((items += l.length) > MAX_PROMPT_ITEMS) return tooMany([i]);
    const j = l.findIndex((x) => !isTokenId(x));
    if (j >= 0) return { path: [i, j], message: 'expected a token id (an integer >= 0)' };
  }
  return null;
}

/** `prompt`: a string, a list of strings, a list of token ids, or a list of token id lists. */
export const PromptSchema = z.unknown().transform((v, ctx): z.output<typeof PromptForms> => {
  if (Array.isArray(v) && v.length > 0 && (v.length > UNION_ITEMS || (Array.isArray(v[0]) && v.some((l) => Array.isArray(l) && l.length > UNION_ITEMS)))) {
    const problem = promptProblem(v);
    if (!problem) return v as z.output<typeof PromptForms>;
    ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path, input: v });
    return z.NEVER;
  }
  const r = PromptForms.safeParse(v);
  if (r.success) return r.data;
  for (const issue of r.error.issues) ctx.addIssue({ ...issue, input: v } as Parameters<typeof ctx.addIssue>[0]);
  return z.NEVER;
});

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
