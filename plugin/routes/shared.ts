/**
 * What the route handlers share: access to the registry, in-flight tracking, disconnect
 * handling, ids, and the mapping from request fields to a GenerateRequest.
 */
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Admission } from '../admission.ts';
import { accessOf, holdStream, mayUseAdapter, mayUseModel } from '../auth.ts';
import type { CompositionBody } from '../compose.ts';
import { InvalidRequestError, ModelNotFoundError, toOpenAIError } from '../errors.ts';
import type { LoggerLike } from '../engine-hub.ts';
import { startGeneration, type GenerateRequest, type Generation } from '../generate.ts';
import { generationTokensTotal, itlSeconds, promptTokensTotal, ttftSeconds } from '../metrics.ts';
import type { ModelRegistry, ResolvedModel } from '../registry.ts';
import { setMetricModel } from '../request-context.ts';
import { stopList } from '../schemas/index.ts';
import { enterTurn } from '../turn-gate.ts';

/** Services the routes need from the router. */
export interface RouteContext {
  /** The registry once models are loaded; rejects with 503 when loading failed or the router closed. */
  registry(): Promise<ModelRegistry>;
  /** Register an in-flight generation (aborted by `close()`); call the result when done. */
  track(gen: Generation): () => void;
  /** The admission queue of a base model. */
  admission(model: string): Admission;
  logger: LoggerLike;
}

/**
 * Resolve the request's model for its key: anything the key may not use answers exactly as an
 * unknown model would (404, no detail), so its existence is not leaked.
 */
export function resolveFor(req: Request, res: Response, registry: ModelRegistry, model: string, body: CompositionBody = {}): ResolvedModel {
  const access = accessOf(req);
  if (access.key === undefined) {
    const r = registry.resolve(model, body);
    setMetricModel(res, r.model.name);
    return r;
  }
  let r: ResolvedModel;
  try {
    r = registry.resolve(model, body);
  } catch (err) {
    if (err instanceof ModelNotFoundError) throw new ModelNotFoundError(model);
    throw err;
  }
  const base = r.model.name;
  const members = r.composition?.members ?? [];
  const ok = members.length === 0 ? mayUseModel(access, base) : members.every((m) => mayUseAdapter(access, base, m.name));
  if (!ok) throw new ModelNotFoundError(model);
  setMetricModel(res, base);
  return r;
}

/** A started generation and the cleanup to call when the response is done. */
export interface Started {
  gen: Generation;
  done: () => void;
}

/**
 * Start a generation under the limits: the key's concurrent-request limit, the base model's
 * admission queue (waits, or 429), then `startGeneration`; the generation is tracked, aborted
 * when the client leaves, and its places released once its sequences have ended.
 */
export async function runGeneration(ctx: RouteContext, req: Request, watch: DisconnectWatch, r: GenerateRequest): Promise<Started> {
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
    const gen = await startGeneration({
      ...r,
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
    });
    promptTokensTotal.inc({ model: name }, gen.promptTokens);
    const t = ticket;
    void gen.settled.finally(() => {
      t.release();
      releaseStream();
      generationTokensTotal.inc({ model: name }, gen.usage.completion_tokens);
    });
    return { gen, done: supervise(ctx, req, watch, gen) };
  } catch (err) {
    ticket?.release();
    releaseStream();
    throw err;
  }
}

/** An OpenAI-style object id: prefix + 24 hex chars (from randomUUID: Node batches its entropy). */
/**
 * Log a stream that failed after its headers went out: a 503 (shutdown cut it, the model went
 * away) is expected and logged as a warning without a stack; anything else is an error.
 */
export function logStreamFailure(logger: LoggerLike, err: unknown, what: string): void {
  const out = toOpenAIError(err);
  if (out.status === 503) logger.warn({ error: out.body.error }, `${what} cut: ${out.body.error.message}`);
  else logger.error({ err }, `${what} failed`);
}

export function newId(prefix: string): string {
  const u = randomUUID();
  return prefix + u.slice(0, 8) + u.slice(9, 13) + u.slice(15, 18) + u.slice(20, 23) + u.slice(24, 30);
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

/** Unix seconds now. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

/** Fields of a body both endpoints map the same way. */
interface SamplingBody {
  n?: number | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  seed?: number | null;
  stop?: string | string[] | null;
}

/** Body → the sampling part of a GenerateRequest (nulls become defaults). */
export function samplingFromBody(body: SamplingBody): Omit<GenerateRequest, 'model' | 'composition' | 'prompts' | 'promptParam'> {
  return {
    n: body.n ?? 1,
    maxTokens: body.max_tokens ?? undefined,
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    topK: body.top_k ?? undefined,
    presencePenalty: body.presence_penalty ?? undefined,
    frequencyPenalty: body.frequency_penalty ?? undefined,
    logitBias: body.logit_bias ?? undefined,
    seed: body.seed ?? undefined,
    stop: stopList(body.stop),
  };
}

/** Whether the client went away before the response finished, and a hook for when it does. */
export interface DisconnectWatch {
  readonly gone: boolean;
  onGone(cb: () => void): void;
}

/** Watch `res` for a premature close (registered early: the client may leave while an adapter loads). */
export function watchDisconnect(res: Response): DisconnectWatch {
  const callbacks: Array<() => void> = [];
  const watch = {
    gone: false,
    onGone(cb: () => void) {
      if (watch.gone) cb();
      else callbacks.push(cb);
    },
  };
  res.on('close', () => {
    if (res.writableFinished) return;
    watch.gone = true;
    for (const cb of callbacks.splice(0)) cb();
  });
  return watch;
}

/** Track a generation and abort it on disconnect; returns the cleanup to call when the response is done. */
export function supervise(ctx: RouteContext, req: Request, watch: DisconnectWatch, gen: Generation): () => void {
  const untrack = ctx.track(gen);
  watch.onGone(() => {
    ctx.logger.debug({ url: req.originalUrl }, 'client disconnected; cancelling');
    gen.abort();
  });
  return untrack;
}
