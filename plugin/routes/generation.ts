/**
 * The one handler behind `POST /v1/chat/completions` and `POST /v1/completions`.
 *
 * Per request: validate the body, resolve its target (plugin/resolve.ts), map the sampling
 * fields, let the endpoint tokenize its prompts (all in the request's turn: turn-gate.ts), wait
 * for admission, start the generation, then answer with one JSON body or an SSE stream. The
 * endpoint (routes/chat.ts, routes/completions.ts) supplies only its `prepare` (body → prompts)
 * and its renderer (deltas → OpenAI `choices`).
 *
 * Shape of every response (OpenAI's key order): `{id, object, created, model,
 * system_fingerprint, choices, usage}`. A stream sends each choice's opening chunk (if the
 * endpoint has one), one chunk per rendered delta, then with `stream_options.include_usage` a
 * last chunk with `choices: []` and `usage` (every other chunk then has `usage: null`), then
 * `[DONE]`. With vLLM's `stream_options.continuous_usage_stats` too, every chunk's `usage` is its
 * choice's so far instead of null (its prompt's tokens, the choice's tokens up to that chunk; 0 on
 * the opening), as vLLM sends it. An error after the headers went out is one error event
 * (plugin/sse.ts).
 */
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { z } from 'zod';
import { accessOf, holdStream } from '../auth.ts';
import { toOpenAIError } from '../errors.ts';
import { collectChoices, startGeneration, type ChoiceDelta, type FinishReason, type GenerateRequest, type Generation, type TokenInfo } from '../generate.ts';
import type { PromptLogprobsResult } from '../../native/types.ts';
import type { LoggerLike } from '../logger.ts';
import { generationTokensTotal, itlSeconds, promptTokensTotal, ttftSeconds } from '../metrics.ts';
import type { ServedModel } from '../registry.ts';
import { requestLog } from '../request-context.ts';
import { resolveRequest, type CompositionBody } from '../resolve.ts';
import { parseRequest, stopList } from '../schemas/index.ts';
import { SseWriter } from '../sse.ts';
import type { GrammarSpec } from '../structured/spec.ts';
import { enterTurn } from '../turn-gate.ts';
import type { RouteContext } from './context.ts';

/** Body fields both endpoints have (plugin/schemas/common.ts `commonFields`), mapped the same way. */
export interface GenerationBody extends CompositionBody {
  model: string;
  n?: number | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  min_p?: number | null;
  include_stop_str_in_output?: boolean | null;
  logit_bias?: Record<string, number> | null;
  seed?: number | null;
  stop?: string | string[] | null;
  ignore_eos?: boolean | null;
  stop_token_ids?: number[] | null;
  min_tokens?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null; continuous_usage_stats?: boolean | null } | null;
}

/** What an endpoint's `prepare` makes of a body: the prompts and its own GenerateRequest fields. */
export interface Prepared {
  /** Tokenized prompts; each gets `n` choices (choice index = prompt * n + i). */
  prompts: number[][];
  /** Completion length when the endpoint has its own field for it (chat: max_completion_tokens); else `max_tokens`. */
  maxTokens?: number;
  /** Completion length without a max in the body (completions: 16), within what the context leaves; undefined: all of it. */
  defaultMaxTokens?: number;
  /** undefined: no logprobs; k >= 0: the chosen token's logprob plus k alternatives. */
  logprobs?: number;
  /** k >= 0: score the prompt tokens too, with k alternatives (GenerateRequest.promptLogprobs). */
  promptLogprobs?: number;
  /** The field that asked for the prompt's scoring (`echo`, `prompt_logprobs`), named by its refusals. */
  promptLogprobsParam?: string;
  /** The grammar every choice's output must follow (response_format, guided_*, forced tool calls). */
  grammar?: GrammarSpec;
}

/** Turns one generation's output into OpenAI `choices` entries, whole or streamed. */
export interface ChoiceRenderer {
  /** Text each choice starts with (completions' `echo`), by choice index. */
  prefix?: (index: number) => string;
  /** Non-streaming: the `choices` entry of choice `index`. */
  choice(index: number, text: string, tokens: TokenInfo[], finish: FinishReason | null): unknown;
  /** Streaming: the choice of the chunk sent before any token (chat: the role; completions: the echo), or undefined. */
  opening(index: number): unknown;
  /** Non-streaming: fields of the whole response after `usage` (chat: vLLM's `prompt_logprobs`), if any. */
  responseFields?: () => Record<string, unknown>;
  /**
   * Streaming: call `send` with each choice (serialized as JSON: the per-token hot path may
   * build it by hand) to send for `d`, one chunk each; none when `d` has nothing to show.
   */
  delta(d: ChoiceDelta, send: (choiceJson: string) => void): void;
}

/** The endpoint-specific parts of a generation route. */
export interface GenerationEndpoint<B extends GenerationBody, P extends Prepared> {
  /** Zod schema of the body (plugin/schemas/). */
  schema: z.ZodType<B>;
  /** Field named by prompt errors (context length, empty prompt): `messages` or `prompt`. */
  promptParam: string;
  /** Response id prefix (`chatcmpl-`, `cmpl-`). */
  idPrefix: string;
  /** `object` of a whole response and of a stream chunk. */
  object: string;
  chunkObject: string;
  /** What log lines call a response of this endpoint (`chat completion`). */
  label: string;
  /**
   * Body → prompts (run in the request's turn, after the target is resolved).
   * @throws InvalidRequestError / ContextLengthError (400) naming the prompt field.
   */
  prepare(body: B, model: ServedModel): P;
  /**
   * The renderer of one started generation of `gen.size` choices, `n` per prompt; `promptLogprobs`
   * per prompt when `prepared.promptLogprobs` asked for them.
   */
  renderer(body: B, model: ServedModel, prepared: P, n: number, size: number, promptLogprobs?: PromptLogprobsResult[]): ChoiceRenderer;
}

/** Handler factory: one generation endpoint over the shared request path. */
export function generationRoute<B extends GenerationBody, P extends Prepared>(ctx: RouteContext, endpoint: GenerationEndpoint<B, P>) {
  return async function generationHandler(req: Request, res: Response): Promise<void> {
    const watch = watchDisconnect(res);
    const registry = await ctx.registry();
    const { body, model, composition, sampling, prepared } = await inTurn(() => {
      const body = parseRequest(endpoint.schema, req.body);
      const { model, composition } = resolveRequest(req, res, registry, body.model, body);
      const sampling = samplingFromBody(body);
      const prepared = endpoint.prepare(body, model);
      return { body, model, composition, sampling, prepared };
    });
    const log = requestLog(res, ctx.logger);
    const { gen, done } = await runGeneration(ctx, req, watch, log, {
      ...sampling,
      maxTokens: prepared.maxTokens ?? sampling.maxTokens,
      defaultMaxTokens: prepared.defaultMaxTokens,
      model,
      composition,
      prompts: prepared.prompts,
      promptParam: endpoint.promptParam,
      logprobs: prepared.logprobs,
      promptLogprobs: prepared.promptLogprobs,
      promptLogprobsParam: prepared.promptLogprobsParam,
      grammar: prepared.grammar,
    });
    const head = { id: newId(endpoint.idPrefix), object: endpoint.object, created: unixNow(), model: body.model, system_fingerprint: model.fingerprint };
    try {
      let promptLogprobs: PromptLogprobsResult[] | undefined;
      try {
        promptLogprobs = await gen.promptLogprobs;
      } catch (err) {
        if (watch.gone) return;  // the client left: its scoring was cancelled
        gen.abort();
        throw err;
      }
      if (watch.gone) return;
      const render = endpoint.renderer(body, model, prepared, sampling.n, gen.size, promptLogprobs);
      if (!body.stream) {
        const { text, tokens, finish } = await collectChoices(gen, render.prefix);
        if (watch.gone) return;
        res.json({ ...head, choices: text.map((t, index) => render.choice(index, t, tokens[index]!, finish[index]!)), usage: gen.usage, ...render.responseFields?.() });
        return;
      }
      const includeUsage = body.stream_options?.include_usage === true;
      const chunkHead = { ...head, object: endpoint.chunkObject };
      // Per-token hot path: the chunk's fixed JSON around `choices` is serialized once, exactly as
      // JSON.stringify({...chunkHead, choices: [choice], usage?}) writes it (same keys, same order).
      // `"choices":[0]` cannot occur inside a JSON string (its quotes would be escaped): the cut is unambiguous.
      const template = JSON.stringify({ ...chunkHead, choices: [0], ...(includeUsage ? { usage: null } : {}) });
      const cut = template.indexOf('"choices":[0]') + '"choices":'.length;
      const pre = template.slice(0, cut);
      const post = template.slice(cut + '[0]'.length);
      const sse = new SseWriter(res);
      const send = (choiceJson: string) => sse.sendJson(`${pre}[${choiceJson}]${post}`);
      // vLLM's continuous usage stats: `"usage":null` becomes the choice's usage so far.
      const usageSend = (index: number, completion: number) => {
        const prompt = prepared.prompts[Math.floor(index / sampling.n)]!.length;
        const usage = `,"usage":{"prompt_tokens":${prompt},"completion_tokens":${completion},"total_tokens":${prompt + completion}}}`;
        return (choiceJson: string) => sse.sendJson(`${pre}[${choiceJson}]${usage}`);
      };
      const continuous = includeUsage && body.stream_options?.continuous_usage_stats === true;
      try {
        sse.start();
        for (let index = 0; index < gen.size; index++) {
          const opening = render.opening(index);
          if (opening !== undefined) (continuous ? usageSend(index, 0) : send)(JSON.stringify(opening));
        }
        for await (const d of gen) render.delta(d, continuous ? usageSend(d.index, d.completionTokens) : send);
        if (watch.gone) return;
        if (includeUsage) sse.send({ ...chunkHead, choices: [], usage: gen.usage });
        sse.done();
      } catch (err) {
        logStreamFailure(log, err, `${endpoint.label} stream`);
        sse.error(err);
      }
    } finally {
      done();
    }
  };
}

/** Body → the sampling part of a GenerateRequest (nulls become defaults). */
export function samplingFromBody(body: GenerationBody): Omit<GenerateRequest, 'model' | 'composition' | 'prompts' | 'promptParam'> {
  return {
    n: body.n ?? 1,
    maxTokens: body.max_tokens ?? undefined,
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    topK: body.top_k ?? undefined,
    presencePenalty: body.presence_penalty ?? undefined,
    frequencyPenalty: body.frequency_penalty ?? undefined,
    repetitionPenalty: body.repetition_penalty ?? undefined,
    minP: body.min_p ?? undefined,
    includeStopStr: body.include_stop_str_in_output ?? undefined,
    logitBias: body.logit_bias ?? undefined,
    seed: body.seed ?? undefined,
    stop: stopList(body.stop),
    ignoreEos: body.ignore_eos ?? undefined,
    stopTokenIds: body.stop_token_ids ?? undefined,
    minTokens: body.min_tokens ?? undefined,
  };
}

/**
 * Start a generation under the limits: the key's concurrent-request limit, the base model's
 * admission queue (waits, or 429), then `startGeneration`; the generation is tracked, aborted
 * when the client leaves, and its places released once its sequences have ended. Observes
 * TTFT and ITL per token, prompt and generation token counts per request.
 * @returns the generation and the cleanup to call when the response is done.
 */
export async function runGeneration(
  ctx: RouteContext,
  req: Request,
  watch: DisconnectWatch,
  log: LoggerLike,
  r: GenerateRequest,
): Promise<{ gen: Generation; done: () => void }> {
  const name = r.model.name;
  const releaseStream = holdStream(accessOf(req));
  const adapters = (r.composition?.members ?? []).map((m) => `${name}:${m.name}`);
  let ticket: { release(): void } | undefined;
  const t0 = performance.now();
  // Per-token hot path: label lookups done once per request; last token time per choice index.
  const ttft = ttftSeconds.labels({ model: name });
  const itl = itlSeconds.labels({ model: name });
  const last: number[] = [];
  let first = true;
  try {
    ticket = await ctx.admission(name).admit(r.prompts.length * r.n, adapters, watch);
    const left = new AbortController();  // the client left while a merge was computed for it
    watch.onGone(() => left.abort());
    const gen = await ctx.starting(startGeneration({
      ...r,
      signal: left.signal,
      onToken(index) {
        const now = performance.now();
        if (first) {
          first = false;
          ttft.observe((now - t0) / 1000);
        }
        const prev = last[index];
        if (prev !== undefined) itl.observe((now - prev) / 1000);
        last[index] = now;
      },
    }));
    promptTokensTotal.inc({ model: name }, gen.promptTokens);
    const t = ticket;
    void gen.settled.finally(() => {
      t.release();
      releaseStream();
      generationTokensTotal.inc({ model: name }, gen.usage.completion_tokens);
    });
    const untrack = ctx.track(gen);
    watch.onGone(() => {
      if (watch.cutReason) log.warn({ url: req.originalUrl }, `stream cut: ${watch.cutReason}; cancelling`);
      else log.debug({ url: req.originalUrl }, 'client disconnected; cancelling');
      gen.abort();
    });
    return { gen, done: untrack };
  } catch (err) {
    ticket?.release();
    releaseStream();
    throw err;
  }
}

/**
 * Log a stream that failed after its headers went out: a 503 (shutdown cut it, the model went
 * away) is expected and logged as a warning without a stack; anything else is an error.
 */
export function logStreamFailure(log: LoggerLike, err: unknown, what: string): void {
  const out = toOpenAIError(err);
  if (out.status === 503) log.warn({ error: out.body.error }, `${what} cut: ${out.body.error.message}`);
  else log.error({ err }, `${what} failed`);
}

/** An OpenAI-style object id: prefix + 24 hex chars (from randomUUID: Node batches its entropy). */
function newId(prefix: string): string {
  const u = randomUUID();
  return prefix + u.slice(0, 8) + u.slice(9, 13) + u.slice(15, 18) + u.slice(20, 23) + u.slice(24, 30);
}

/** Unix seconds now. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Run a request's synchronous preparation (schema check, template, tokenization) in its turn
 * (turn-gate.ts): a burst of requests is spread over loop turns instead of blocking running streams.
 */
export async function inTurn<T>(prepare: () => T): Promise<T> {
  const leave = await enterTurn();
  try {
    return prepare();
  } finally {
    leave();
  }
}

/** Whether the client went away before the response finished, and a hook for when it does. */
export interface DisconnectWatch {
  gone: boolean;
  onGone(cb: () => void): void;
  /** Why the server cut the connection itself (SseWriter: a client not reading), if it did. */
  cutReason?: string;
}

/** Watch `res` for a premature close (registered early: the client may leave while an adapter loads). */
export function watchDisconnect(res: Response): DisconnectWatch {
  const callbacks: Array<() => void> = [];
  const watch: DisconnectWatch = {
    gone: false,
    onGone(cb: () => void) {
      if (watch.gone) cb();
      else callbacks.push(cb);
    },
  };
  res.on('close', () => {
    if (res.writableFinished) return;
    watch.gone = true;
    if (typeof res.locals.cutReason === 'string') watch.cutReason = res.locals.cutReason;  // set by SseWriter
    for (const cb of callbacks.splice(0)) cb();
  });
  return watch;
}
