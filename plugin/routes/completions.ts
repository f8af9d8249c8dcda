/**
 * `POST /v1/completions` (legacy text completions), streaming and not, shaped as OpenAI's.
 *
 * `prompt` may be a string, strings, token ids or lists of token ids; each prompt gets `n`
 * choices, numbered prompt-major (index = prompt * n + i). String prompts are encoded WITH
 * special tokens (BOS), as HF does.
 */
import type { Request, Response } from 'express';
import { collectChoices, type TokenInfo } from '../generate.ts';
import { completionLogprobs, type CompletionLogprobs } from '../logprobs.ts';
import { checkSequenceCount } from '../request-checks.ts';
import type { ModelTokenizer } from '../tokenizer.ts';
import { CompletionRequestSchema, parseRequest, type CompletionRequest } from '../schemas/index.ts';
import { SseWriter } from '../sse.ts';
import { inTurn, logStreamFailure, newId, resolveFor, runGeneration, samplingFromBody, unixNow, watchDisconnect, type RouteContext } from './shared.ts';

/** Prompts → token id lists and their texts (for `echo`); refuses too many prompts before any work. */
function tokenizePrompts(tok: ModelTokenizer, prompt: CompletionRequest['prompt'], context: number, n: number): { ids: number[][]; texts: string[] } {
  const list: Array<string | number[]> =
    typeof prompt === 'string' ? [prompt] : typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as Array<string | number[]>);
  checkSequenceCount(list.length, n);
  const ids = list.map((p) => (typeof p === 'string' ? tok.encode(p, true, { maxTokens: context, param: 'prompt' }) : p));
  const texts = list.map((p) => (typeof p === 'string' ? p : tok.decode(p)));
  return { ids, texts };
}

/** Handler factory for text completions. */
export function completions(ctx: RouteContext) {
  return async function completionsHandler(req: Request, res: Response): Promise<void> {
    const watch = watchDisconnect(res);
    const registry = await ctx.registry();
    const { body, model, composition, sampling, prompts } = await inTurn(() => {
      const body = parseRequest(CompletionRequestSchema, req.body);
      const { model, composition } = resolveFor(req, res, registry, body.model, body);
      const sampling = samplingFromBody(body);
      const prompts = tokenizePrompts(model.tokenizer, body.prompt, model.info.maxPositionEmbeddings, body.n ?? 1);
      return { body, model, composition, sampling, prompts };
    });
    const topN = body.logprobs ?? 0;
    const { gen, done } = await runGeneration(ctx, req, watch, {
      ...sampling,
      model,
      composition,
      prompts: prompts.ids,
      promptParam: 'prompt',
      logprobs: body.logprobs ?? undefined,
    });
    const head = { id: newId('cmpl-'), object: 'text_completion', created: unixNow(), model: body.model, system_fingerprint: model.fingerprint };
    const n = sampling.n;
    const echo = (index: number) => (body.echo ? prompts.texts[Math.floor(index / n)]! : '');
    const offsets = Array.from({ length: gen.size }, (_, i) => echo(i).length);
    const logprobsOf = (index: number, tokens: TokenInfo[]): CompletionLogprobs | null => {
      if (body.logprobs == null) return null;
      const r = completionLogprobs(model.tokenizer, tokens, topN, offsets[index]!);
      offsets[index] = r.offset;
      return r.logprobs;
    };

    try {
      if (!body.stream) {
        const { text, tokens, finish } = await collectChoices(gen, echo);
        if (watch.gone) return;
        res.json({
          ...head,
          choices: text.map((t, index) => ({ text: t, index, logprobs: logprobsOf(index, tokens[index]!), finish_reason: finish[index] })),
          usage: gen.usage,
        });
        return;
      }

      const includeUsage = body.stream_options?.include_usage === true;
      const sse = new SseWriter(res);
      const chunk = (choices: unknown[]) => ({ ...head, choices, ...(includeUsage ? { usage: null } : {}) });
      try {
        sse.start();
        if (body.echo) {
          for (let index = 0; index < gen.size; index++) {
            sse.send(chunk([{ text: echo(index), index, logprobs: null, finish_reason: null }]));
          }
        }
        for await (const d of gen) {
          if (d.text || d.tokens.length > 0 || d.finishReason) {
            sse.send(chunk([{ text: d.text, index: d.index, logprobs: logprobsOf(d.index, d.tokens), finish_reason: d.finishReason }]));
          }
        }
        if (watch.gone) return;
        if (includeUsage) sse.send({ ...head, choices: [], usage: gen.usage });
        sse.done();
      } catch (err) {
        logStreamFailure(ctx.logger, err, 'completion stream');
        sse.error(err);
      }
    } finally {
      done();
    }
  };
}
