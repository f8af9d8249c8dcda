/**
 * openlora's OpenAI protocol layer as one Express router.
 *
 * The router takes ready objects (engines, adapter providers, tokenizers or their folders) or
 * a promise of them; it never builds engines itself (the server factory does, from config).
 * Requests that arrive before the models are ready wait; if loading failed they get 503.
 *
 * @example
 * const router = openLora({ models: [{ name: 'tiny', engine, info: engine.info(), tokenizer: dir, adapters }] });
 * app.use(router);
 * await router.ready;
 * // ... on shutdown: await router.close(); then dispose the engines.
 * @module
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { CompositionConfig } from '../adapters/composition.ts';
import type { AdapterProvider } from '../adapters/types.ts';
import type { ModelInfo } from '../native/types.ts';
import { OpenLoraError, ServiceUnavailableError, toOpenAIError } from './errors.ts';
import { silentLogger, type EngineLike, type LoggerLike } from './engine-hub.ts';
import type { Generation } from './generate.ts';
import { ModelRegistry } from './registry.ts';
import { chatCompletions } from './routes/chat.ts';
import { completions } from './routes/completions.ts';
import { listModels, retrieveModel } from './routes/models.ts';
import type { RouteContext } from './routes/shared.ts';
import { loadTokenizer, ModelTokenizer } from './tokenizer.ts';

/** One base model to serve. */
export interface OpenLoraModel {
  /** Name clients use as `model` (and as the `BASE` in `BASE:ADAPTER`). */
  name: string;
  /** The engine (NativeEngine or anything with addSequence / cancel / onEvents). */
  engine: EngineLike;
  /** The engine's model info (context length, vocabulary size, ...). */
  info: ModelInfo;
  /** A Hugging Face model folder holding tokenizer.json (+ configs), or a loaded tokenizer. */
  tokenizer: string | ModelTokenizer;
  /** The adapters of this base. */
  adapters: AdapterProvider;
}

/** Options of `openLora`. */
export interface OpenLoraOptions {
  /** The base models, or a promise of them (requests wait for it; a rejection makes them 503). */
  models: OpenLoraModel[] | Promise<OpenLoraModel[]>;
  /** pino-compatible logger (default: silent). */
  logger?: LoggerLike;
  /** `express.json` body limit (default "16mb": token-id prompts are large). */
  bodyLimit?: string | number;
  /** Named compositions (config `compositions`): usable as `model` by any client, listed in /v1/models. */
  compositions?: Record<string, CompositionConfig>;
}

/** The router plus its lifecycle. */
export interface OpenLoraRouter extends Router {
  /** Resolves when every tokenizer is loaded; rejects with the loading error. */
  ready: Promise<void>;
  /** Stop taking requests (503), cancel in-flight ones and wait until their sequences ended and leases are released. Engines are not disposed. */
  close(): Promise<void>;
}

async function buildRegistry(options: OpenLoraOptions): Promise<ModelRegistry> {
  const models = await options.models;
  if (models.length === 0) throw new Error('openLora: no models configured');
  const inits = await Promise.all(
    models.map(async (m) => ({
      name: m.name,
      engine: m.engine,
      info: m.info,
      adapters: m.adapters,
      tokenizer: typeof m.tokenizer === 'string' ? await loadTokenizer(m.tokenizer) : m.tokenizer,
    })),
  );
  return new ModelRegistry(inits, options.logger, options.compositions);
}

/** Build the OpenAI-compatible router (`/v1/models`, `/v1/chat/completions`, `/v1/completions`). */
export function openLora(options: OpenLoraOptions): OpenLoraRouter {
  const logger = options.logger ?? silentLogger;
  const loading = buildRegistry(options);
  loading.catch((err: unknown) => logger.error({ err }, 'openlora: loading models failed'));
  const inFlight = new Set<Generation>();
  let closed = false;

  const ctx: RouteContext = {
    logger,
    async registry() {
      if (closed) throw new ServiceUnavailableError('The server is shutting down.');
      try {
        return await loading;
      } catch (err) {
        throw new ServiceUnavailableError(`The models failed to load: ${(err as Error).message}`);
      }
    },
    track(gen) {
      inFlight.add(gen);
      return () => inFlight.delete(gen);
    },
  };

  const router = express.Router() as OpenLoraRouter;
  const json = express.json({ limit: options.bodyLimit ?? '16mb' });
  router.get('/v1/models', listModels(ctx));
  router.get('/v1/models/*id', retrieveModel(ctx));
  router.post('/v1/chat/completions', json, chatCompletions(ctx));
  router.post('/v1/completions', json, completions(ctx));
  router.all('/v1/*rest', function unknownRoute(req: Request) {
    throw new OpenLoraError(404, `Unknown request URL: ${req.method} ${req.originalUrl}.`, 'invalid_request_error', null, 'unknown_url');
  });
  router.use(function openAIErrors(err: unknown, req: Request, res: Response, _next: NextFunction) {
    const out = toOpenAIError(err);
    if (out.status >= 500) logger.error({ err, url: req.originalUrl }, 'request failed');
    else logger.debug({ url: req.originalUrl, error: out.body.error }, 'request refused');
    if (res.headersSent) {
      // A stream already started handles its own errors; anything else can only be cut off.
      if (!res.writableEnded) res.end();
      return;
    }
    res.status(out.status).set(out.headers).json(out.body);
  });

  router.ready = loading.then(() => undefined);
  router.ready.catch(() => {});
  router.close = async () => {
    closed = true;
    const gens = [...inFlight];
    for (const g of gens) g.abort(new ServiceUnavailableError('The server is shutting down.'));
    await Promise.all(gens.map((g) => g.settled));
  };
  return router;
}

export { ModelTokenizer, loadTokenizer } from './tokenizer.ts';
export type { EngineLike, LoggerLike } from './engine-hub.ts';
