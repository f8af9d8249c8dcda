/**
 * What the route handlers share: access to the registry, in-flight tracking, disconnect
 * handling, ids, and the mapping from request fields to a GenerateRequest.
 */
import { randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import { InvalidRequestError } from '../errors.ts';
import type { LoggerLike } from '../engine-hub.ts';
import type { GenerateRequest, Generation } from '../generate.ts';
import type { ModelRegistry } from '../registry.ts';
import { stopList } from '../schemas/index.ts';

/** Services the routes need from the router. */
export interface RouteContext {
  /** The registry once models are loaded; rejects with 503 when loading failed or the router closed. */
  registry(): Promise<ModelRegistry>;
  /** Register an in-flight generation (aborted by `close()`); call the result when done. */
  track(gen: Generation): () => void;
  logger: LoggerLike;
}

/** An OpenAI-style object id: prefix + 24 hex chars. */
export function newId(prefix: string): string {
  return prefix + randomBytes(12).toString('hex');
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
