/**
 * `POST /v1/chat/completions`, streaming and not, shaped exactly as OpenAI's.
 *
 * Stream order per choice: `{delta: {role: "assistant", content: ""}}`, content deltas, then
 * `{delta: {}, finish_reason}`; with `stream_options.include_usage` a last chunk has
 * `choices: []` and `usage`, and every other chunk `usage: null`.
 */
import type { Request, Response } from 'express';
import { collectChoices, type TokenInfo } from '../generate.ts';
import { chatLogprobs } from '../logprobs.ts';
import { ChatCompletionRequestSchema, parseRequest } from '../schemas/index.ts';
import { SseWriter } from '../sse.ts';
import { inTurn, logStreamFailure, newId, resolveFor, runGeneration, samplingFromBody, unixNow, watchDisconnect, type RouteContext } from './shared.ts';

/** Handler factory for chat completions. */
export function chatCompletions(ctx: RouteContext) {
  return async function chatCompletionsHandler(req: Request, res: Response): Promise<void> {
    const watch = watchDisconnect(res);
    const registry = await ctx.registry();
    const { body, model, composition, sampling, promptIds } = await inTurn(() => {
      const body = parseRequest(ChatCompletionRequestSchema, req.body);
      const { model, composition } = resolveFor(req, res, registry, body.model, body);
      const sampling = samplingFromBody(body);
      const promptIds = model.tokenizer.encodeChat(body.messages, model.info.maxPositionEmbeddings);
      return { body, model, composition, sampling, promptIds };
    });
    const topN = body.top_logprobs ?? 0;
    const { gen, done } = await runGeneration(ctx, req, watch, {
      ...sampling,
      maxTokens: body.max_completion_tokens ?? sampling.maxTokens,
      model,
      composition,
      prompts: [promptIds],
      promptParam: 'messages',
      logprobs: body.logprobs ? topN : undefined,
    });
    const head = { id: newId('chatcmpl-'), created: unixNow(), model: body.model, system_fingerprint: model.fingerprint };
    const logprobsOf = (tokens: TokenInfo[]) => (body.logprobs ? chatLogprobs(model.tokenizer, tokens, topN) : null);

    try {
      if (!body.stream) {
        const { text, tokens, finish } = await collectChoices(gen);
        if (watch.gone) return;
        res.json({
          ...head,
          object: 'chat.completion',
          choices: text.map((content, index) => ({
            index,
            message: { role: 'assistant', content, refusal: null },
            logprobs: logprobsOf(tokens[index]!),
            finish_reason: finish[index],
          })),
          usage: gen.usage,
        });
        return;
      }

      const includeUsage = body.stream_options?.include_usage === true;
      const sse = new SseWriter(res);
      const chunk = (choices: unknown[]) => ({
        ...head,
        object: 'chat.completion.chunk',
        choices,
        ...(includeUsage ? { usage: null } : {}),
      });
      // Per-token hot path: the chunk's fixed JSON around `choices` is serialized once, exactly as
      // JSON.stringify(chunk([choice])) writes it (same keys, same order). `"choices":[0]` cannot
      // occur inside a JSON string (its quotes would be escaped), so the cut is unambiguous.
      const template = JSON.stringify(chunk([0]));
      const cut = template.indexOf('"choices":[0]') + '"choices":'.length;
      const pre = template.slice(0, cut);
      const post = template.slice(cut + '[0]'.length);
      const choiceJson = (choice: unknown) => `${pre}[${JSON.stringify(choice)}]${post}`;
      try {
        for (let index = 0; index < gen.size; index++) {
          sse.send(chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
        }
        for await (const d of gen) {
          if (d.text || d.tokens.length > 0) {
            const lp = logprobsOf(d.tokens);
            sse.sendJson(
              lp === null
                ? `${pre}[{"index":${d.index},"delta":{"content":${JSON.stringify(d.text)}},"logprobs":null,"finish_reason":null}]${post}`
                : choiceJson({ index: d.index, delta: { content: d.text }, logprobs: lp, finish_reason: null }),
            );
          }
          if (d.finishReason) {
            sse.sendJson(`${pre}[{"index":${d.index},"delta":{},"logprobs":null,"finish_reason":${JSON.stringify(d.finishReason)}}]${post}`);
          }
        }
        if (watch.gone) return;
        if (includeUsage) sse.send({ ...head, object: 'chat.completion.chunk', choices: [], usage: gen.usage });
        sse.done();
      } catch (err) {
        logStreamFailure(ctx.logger, err, 'chat completion stream');
        sse.error(err);
      }
    } finally {
      done();
    }
  };
}
