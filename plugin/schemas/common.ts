/**
 * Request fields shared by /v1/chat/completions and /v1/completions.
 *
 * Every optional field also accepts `null` (clients such as LangChain send explicit nulls), and
 * unknown keys are stripped, never rejected: clients send newer OpenAI fields all the time.
 * Fields this server cannot honour are refused with a 400 naming them rather than silently
 * ignored; the output-constraining fields are in ./structured.ts.
 */
import { z } from 'zod';
import { AdapterWeightSchema, MergeOptionsSchema } from '../../adapters/composition.ts';

/** OpenAI allows at most 4 stop sequences. */
export const MAX_STOP = 4;

/** `stop`: one string or up to 4. */
export const StopSchema = z.union([z.string(), z.array(z.string()).max(MAX_STOP)]);

/** Most adapters one composition may name (the `adapters` field and `A@w+B@w+...` model names). */
export const MAX_COMPOSITION_MEMBERS = 16;

/** Body extension: an explicit adapter set `[{name, weight}]` (1 to 16 members, finite weights). */
export const AdapterSetSchema = z.array(AdapterWeightSchema).min(1).max(MAX_COMPOSITION_MEMBERS);

/**
 * logit_bias: token id (a decimal string) -> bias in [-100, 100]. NOTE(why): zod's record skips
 * an own "__proto__" key (JSON.parse makes one), which would drop it silently: it is refused first,
 * as any other key that is not a token id.
 */
const LogitBiasSchema = z
  .custom<unknown>()
  .superRefine((v, ctx) => {
    if (v !== null && typeof v === 'object' && Object.prototype.hasOwnProperty.call(v, '__proto__')) {
      ctx.addIssue({ code: 'custom', message: 'expected a token id (decimal integer string) as every key, but got "__proto__" instead.' });
    }
  })
  .pipe(z.record(z.string().regex(/^\d+$/, { error: 'expected a token id (decimal integer string)' }), z.number().min(-100).max(100)));

/** Sampling and output fields common to both endpoints. */
export const commonFields = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** vLLM extension: keep the k most likely tokens (-1 or 0 disables). */
  top_k: z.number().int().min(-1).nullish(),
  n: z.number().int().min(1).max(16).nullish(),
  stop: StopSchema.nullish(),
  seed: z.number().int().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  /**
   * vLLM extension: prompt and generated tokens get logit / r (positive) or logit * r (negative).
   * vLLM takes any r > 0; past [1e-6, 1e6] the float32 logits overflow (r = 1e-38 made every
   * token +inf), and such a penalty acts as an infinite one anyway.
   */
  repetition_penalty: z.number().min(1e-6).max(1e6).nullish(),
  /** vLLM extension: drop tokens whose probability is below min_p times the most likely one's. */
  min_p: z.number().min(0).max(1).nullish(),
  /** vLLM extension: a matched stop string is kept at the end of the text. */
  include_stop_str_in_output: z.boolean().nullish(),
  /** Token id (as a decimal string) → bias in [-100, 100]; ids are checked against the vocabulary at use. */
  logit_bias: LogitBiasSchema.nullish(),
  /**
   * vLLM extension: keep generating past the end-of-sequence tokens (EOS / end of turn) until
   * max_tokens or a stop string; every serving benchmark sends it.
   */
  ignore_eos: z.boolean().nullish(),
  /** vLLM extension: token ids that end a choice like the model's own stop tokens (also with ignore_eos). */
  stop_token_ids: z.array(z.number().int().min(0)).max(64).nullish(),
  /** vLLM extension: the end-of-sequence tokens cannot be sampled, nor stop strings match, before this many tokens. */
  min_tokens: z.number().int().min(0).nullish(),
  /**
   * vLLM extension: score the prompt too: `prompt_logprobs` in the response (chat: top level;
   * completions: per choice), per prompt token its logprob, rank and the k most likely tokens.
   * `true` means 1, as vLLM's int field takes it. Not with `stream` (as vLLM).
   */
  prompt_logprobs: z.union([z.number().min(0).max(20).int(), z.boolean()]).nullish(),
  stream: z.boolean().nullish(),
  /**
   * `include_usage`: a last chunk with the usage; vLLM's `continuous_usage_stats` (with it): every
   * chunk also carries the usage of its choice so far (routes/generation.ts).
   */
  stream_options: z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).nullish(),
  user: z.string().nullish(),
  adapters: AdapterSetSchema.nullish(),
  /** Body extension: how the adapters combine (adapters/composition.ts). */
  merge: MergeOptionsSchema.partial().nullish(),
};

/** vLLM's `prompt_logprobs` as a count of alternatives (`true` is 1), or undefined when not asked for. */
export function promptLogprobsOf(b: { prompt_logprobs?: number | boolean | null }): number | undefined {
  const v = b.prompt_logprobs;
  return v === true ? 1 : typeof v === 'number' ? v : undefined;
}

/** The stop field as a list (empty when absent). */
export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop == null) return [];
  return typeof stop === 'string' ? [stop] : stop;
}

/**
 * Cross-field check shared by both endpoints (zod superRefine helper): `stream_options` only with
 * `stream: true`, as OpenAI and vLLM refuse it otherwise (400 naming `stream_options`), and
 * `prompt_logprobs` only without it (vLLM's rule; 400 naming `prompt_logprobs`).
 */
export function checkStreamOptions(
  b: { stream?: boolean | null; stream_options?: unknown; prompt_logprobs?: number | boolean | null },
  ctx: z.RefinementCtx,
): void {
  if (b.stream_options != null && b.stream !== true) {
    ctx.addIssue({ code: 'custom', path: ['stream_options'], message: '`stream_options` is only allowed when `stream` is true.' });
  }
  if (promptLogprobsOf(b) !== undefined && b.stream === true) {
    ctx.addIssue({ code: 'custom', path: ['prompt_logprobs'], message: '`prompt_logprobs` is not available when `stream` is true.' });
  }
}
