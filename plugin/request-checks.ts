/**
 * Request checks and derivations that need the model: the context window (max_tokens),
 * logit_bias ids, and per-choice seeds.
 *
 * NOTE(why) the engine checks prompt ids, maxTokens and logitBias again (native/engine.ts does
 * not re-validate; C++ does, naming `SequenceParams.<field>`). These stay because they answer in
 * the client's terms: the OpenAI field (`messages` / `prompt` / `logit_bias` / `max_tokens`),
 * OpenAI's wording and code (`context_length_exceeded`), and before any adapter is pinned.
 */
import { ContextLengthError, InvalidRequestError } from './errors.ts';

/** Seed of choice `i`: choice 0 gets the request's seed itself, the others a mix of it (uint32). */
export function choiceSeed(seed: number, i: number): number {
  const base = Number(BigInt.asUintN(32, BigInt(seed)));
  if (i === 0) return base;
  let h = (base ^ Math.imul(i, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Check `logit_bias` ids against the vocabulary (400 naming `logit_bias`); returns engine pairs. */
export function logitBiasPairs(bias: Record<string, number> | undefined, vocabSize: number): Array<[number, number]> {
  if (!bias) return [];
  return Object.entries(bias).map(([k, v]) => {
    const id = Number(k);
    if (!Number.isSafeInteger(id) || id < 0 || id >= vocabSize) {
      throw new InvalidRequestError(
        `Invalid 'logit_bias': token id ${k} is out of range; this model's vocabulary has ids 0..${vocabSize - 1}.`,
        'logit_bias',
      );
    }
    return [id, v];
  });
}

/**
 * Completion budget for one prompt, as vLLM's OpenAI server decides it: a prompt that leaves no
 * room is a 400 naming the prompt field (max 0, completions' echo of the prompt alone, needs none); an explicit max_tokens / max_completion_tokens with
 * prompt + max over the context is a 400 with vLLM's message (context, total, both parts), never
 * clamped; with no max given, the completion may use what is left of the context, or
 * `defaultMax` of it (completions: 16, vLLM's and OpenAI's default).
 * @param promptLength Prompt tokens. @param context Model context (max_position_embeddings).
 * @param requested The client's max, or undefined. @param param The prompt field (`messages` / `prompt`).
 * @param defaultMax The endpoint's default when `requested` is undefined (capped by the context), or undefined.
 * @throws ContextLengthError (400, code context_length_exceeded).
 */
export function completionBudget(promptLength: number, context: number, requested: number | undefined, param: string, defaultMax?: number): number {
  // max_tokens 0 (completions' echo: the prompt alone) needs no room after the prompt.
  if (requested === 0 && promptLength <= context) return 0;
  if (promptLength >= context) {
    throw new ContextLengthError(
      `This model's maximum context length is ${context} tokens. However, your ${param} resulted in ${promptLength} tokens` +
        (promptLength === context ? ', which leaves no room for a completion token. ' : '. ') +
        `Please reduce the length of the ${param}.`,
      param,
    );
  }
  if (requested === undefined) return defaultMax === undefined ? context - promptLength : Math.min(defaultMax, context - promptLength);
  if (promptLength + requested > context) {
    // vLLM serving_engine `_validate_input`, word for word (it says "messages" for both endpoints).
    throw new ContextLengthError(
      `This model's maximum context length is ${context} tokens. However, you requested ${promptLength + requested} tokens ` +
        `(${promptLength} in the messages, ${requested} in the completion). Please reduce the length of the messages or completion.`,
      param,
    );
  }
  return requested;
}

/** Most engine sequences one request may start (prompts × n): one request must not monopolise the engine. */
export const MAX_SEQUENCES_PER_REQUEST = 128;

/**
 * Refuse requests that would start more than MAX_SEQUENCES_PER_REQUEST sequences.
 * @throws InvalidRequestError (400) naming `prompt` (or `n` when one prompt with a large n).
 */
export function checkSequenceCount(prompts: number, n: number): void {
  if (prompts * n > MAX_SEQUENCES_PER_REQUEST) {
    throw new InvalidRequestError(
      `This request asks for ${prompts} prompt(s) × n=${n} = ${prompts * n} completions; at most ${MAX_SEQUENCES_PER_REQUEST} are served per request.`,
      prompts > 1 ? 'prompt' : 'n',
    );
  }
}
