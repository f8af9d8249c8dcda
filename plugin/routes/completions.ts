/**
 * `POST /v1/completions` (legacy text completions): the endpoint's own parts over the shared
 * generation route (routes/generation.ts).
 *
 * `prompt` may be a string, strings, token ids or lists of token ids; each prompt gets `n`
 * choices, numbered prompt-major (index = prompt * n + i). String prompts are encoded WITH
 * special tokens (BOS), as HF does. A stream's last text chunk of a choice carries its
 * `finish_reason` (OpenAI's shape for this endpoint).
 */
import { completionLogprobs, promptCompletionLogprobs, vllmPromptLogprobs, type CompletionLogprobs } from '../logprobs.ts';
import { grammarFromBody } from '../structured/from-body.ts';
import { checkSequenceCount } from '../request-checks.ts';
import type { ModelTokenizer } from '../tokenizer.ts';
import { CompletionRequestSchema, promptLogprobsOf, type CompletionRequest } from '../schemas/index.ts';
import type { TokenInfo } from '../generate.ts';
import type { RouteContext } from './context.ts';
import { generationRoute, type GenerationEndpoint, type Prepared } from './generation.ts';

/** max_tokens of a completions request that gives none (OpenAI's and vLLM's default). */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

/** Prepared completions: the token ids of each prompt and its text (for `echo`). */
interface PreparedPrompts extends Prepared {
  texts: string[];
}

/** Prompts → token id lists and their texts; refuses too many prompts before any work. */
function tokenizePrompts(tok: ModelTokenizer, prompt: CompletionRequest['prompt'], context: number, n: number): { ids: number[][]; texts: string[] } {
  const list: Array<string | number[]> =
    typeof prompt === 'string' ? [prompt] : typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as Array<string | number[]>);
  checkSequenceCount(list.length, n);
  const ids = list.map((p) => (typeof p === 'string' ? tok.encode(p, true, { maxTokens: context, param: 'prompt' }) : p));
  const texts = list.map((p) => (typeof p === 'string' ? p : tok.decode(p)));
  return { ids, texts };
}

/** The completions endpoint: many prompts, `echo`, legacy logprobs with text offsets. */
export const completionsEndpoint: GenerationEndpoint<CompletionRequest, PreparedPrompts> = {
  schema: CompletionRequestSchema,
  promptParam: 'prompt',
  idPrefix: 'cmpl-',
  object: 'text_completion',
  chunkObject: 'text_completion',
  label: 'completion',
  prepare(body, model) {
    const { ids, texts } = tokenizePrompts(model.tokenizer, body.prompt, model.info.maxModelLen, body.n ?? 1);
    // OpenAI's legacy completions and vLLM's /v1/completions stop at 16 tokens without max_tokens.
    // echo with logprobs: the prompt's tokens are scored too, and lead each choice's logprobs;
    // vLLM's prompt_logprobs: the same scoring, in its own field. One scoring serves both.
    const echoK = body.echo && body.logprobs != null ? body.logprobs : undefined;
    const vllmK = promptLogprobsOf(body);
    const promptLogprobs = echoK === undefined ? vllmK : vllmK === undefined ? echoK : Math.max(echoK, vllmK);
    return {
      prompts: ids,
      texts,
      defaultMaxTokens: DEFAULT_COMPLETION_MAX_TOKENS,
      logprobs: body.logprobs ?? undefined,
      promptLogprobs,
      promptLogprobsParam: echoK !== undefined ? 'echo' : 'prompt_logprobs',
      grammar: grammarFromBody(body),
    };
  },
  renderer(body, model, prepared, n, size, scored) {
    const topN = body.logprobs ?? 0;
    const echo = (index: number) => (body.echo ? prepared.texts[Math.floor(index / n)]! : '');
    // The echoed prompt's logprobs per prompt (echo with logprobs), and where its text offsets end.
    const promptPart = body.echo && body.logprobs != null ? scored?.map((r, p) => promptCompletionLogprobs(model.tokenizer, prepared.prompts[p]!, r, topN)) : undefined;
    const vllmK = promptLogprobsOf(body);
    const vllmPart = vllmK === undefined ? undefined : scored?.map((r, p) => vllmPromptLogprobs(model.tokenizer, prepared.prompts[p]!, r, vllmK));
    // Text offset of each choice's next token (legacy logprobs count from the echoed prompt on).
    const offsets = Array.from({ length: size }, (_, i) => promptPart?.[Math.floor(i / n)]!.offset ?? echo(i).length);
    const logprobsOf = (index: number, tokens: TokenInfo[]): CompletionLogprobs | null => {
      if (body.logprobs == null) return null;
      const r = completionLogprobs(model.tokenizer, tokens, topN, offsets[index]!);
      offsets[index] = r.offset;
      return r.logprobs;
    };
    /** Non-streaming: the prompt's logprobs (if scored) followed by the generated tokens'. */
    const wholeLogprobs = (index: number, tokens: TokenInfo[]): CompletionLogprobs | null => {
      const generated = logprobsOf(index, tokens);
      const lead = promptPart?.[Math.floor(index / n)]!.logprobs;
      if (!lead || !generated) return generated;
      return {
        tokens: [...lead.tokens, ...generated.tokens],
        token_logprobs: [...lead.token_logprobs, ...generated.token_logprobs],
        top_logprobs: [...lead.top_logprobs, ...generated.top_logprobs],
        text_offset: [...lead.text_offset, ...generated.text_offset],
      };
    };
    return {
      prefix: echo,
      choice: (index, text, tokens, finish) => ({
        text,
        index,
        logprobs: wholeLogprobs(index, tokens),
        finish_reason: finish,
        ...(vllmPart ? { prompt_logprobs: vllmPart[Math.floor(index / n)] } : {}),
      }),
      opening: (index) =>
        body.echo ? { text: echo(index), index, logprobs: promptPart?.[Math.floor(index / n)]!.logprobs ?? null, finish_reason: null } : undefined,
      delta(d, send) {
        if (d.text || d.tokens.length > 0 || d.finishReason) {
          send(JSON.stringify({ text: d.text, index: d.index, logprobs: logprobsOf(d.index, d.tokens), finish_reason: d.finishReason }));
        }
      },
    };
  },
};

/** Handler factory for text completions. */
export function completions(ctx: RouteContext) {
  return generationRoute(ctx, completionsEndpoint);
}
