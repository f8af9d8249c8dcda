/**
 * `POST /v1/chat/completions`: the chat endpoint's own parts over the shared generation route
 * (routes/generation.ts): messages rendered by the model's chat template, and OpenAI's chat shapes.
 *
 * Stream order per choice: `{delta: {role: "assistant", content: ""}}`, content deltas, then
 * `{delta: {}, finish_reason}`.
 */
import { chatLogprobs } from '../logprobs.ts';
import { ChatCompletionRequestSchema, type ChatCompletionRequest } from '../schemas/index.ts';
import type { RouteContext } from './context.ts';
import { generationRoute, type GenerationEndpoint, type Prepared } from './generation.ts';

/** The chat endpoint: one prompt (the rendered messages); `max_completion_tokens` wins over `max_tokens`. */
export const chatEndpoint: GenerationEndpoint<ChatCompletionRequest, Prepared> = {
  schema: ChatCompletionRequestSchema,
  promptParam: 'messages',
  idPrefix: 'chatcmpl-',
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  label: 'chat completion',
  prepare(body, model) {
    return {
      prompts: [model.tokenizer.encodeChat(body.messages, model.info.maxPositionEmbeddings)],
      maxTokens: body.max_completion_tokens ?? undefined,
      logprobs: body.logprobs ? (body.top_logprobs ?? 0) : undefined,
    };
  },
  renderer(body, model) {
    const topN = body.top_logprobs ?? 0;
    const logprobsOf = (tokens: Parameters<typeof chatLogprobs>[1]) => (body.logprobs ? chatLogprobs(model.tokenizer, tokens, topN) : null);
    return {
      choice: (index, content, tokens, finish) => ({
        index,
        message: { role: 'assistant', content, refusal: null },
        logprobs: logprobsOf(tokens),
        finish_reason: finish,
      }),
      opening: (index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }),
      delta(d, send) {
        if (d.text || d.tokens.length > 0) {
          const lp = logprobsOf(d.tokens);
          send(
            lp === null
              ? `{"index":${d.index},"delta":{"content":${JSON.stringify(d.text)}},"logprobs":null,"finish_reason":null}`
              : JSON.stringify({ index: d.index, delta: { content: d.text }, logprobs: lp, finish_reason: null }),
          );
        }
        if (d.finishReason) send(`{"index":${d.index},"delta":{},"logprobs":null,"finish_reason":${JSON.stringify(d.finishReason)}}`);
      },
    };
  },
};

/** Handler factory for chat completions. */
export function chatCompletions(ctx: RouteContext) {
  return generationRoute(ctx, chatEndpoint);
}
