/**
 * openlora's OpenAI protocol layer as one Express router.
 *
 * The router takes ready objects (engines, adapter providers, tokenizers or their folders) or
 * a promise of them; it never builds engines itself (the server factory does, from config).
 * Requests that arrive before the models are ready wait; if loading failed they get 503.
 *
 * @example
 * const engine = await Engine.load(dir);
 * const router = openLora({ models: [{ name: 'tiny', engine, tokenizer: dir, adapters }] });
 * app.use(router);
 * await router.ready;
 * // ... on shutdown: await router.close(); then dispose the engines.
 * @module
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { CompositionConfig } from '../adapters/composition.ts';
import type { AdapterProvider } from '../adapters/types.ts';
import { DEFAULTS, type KeyConfig, type UpstreamConfig } from '../config/schema.ts';
import { Admission } from './admission.ts';
import { accessOf, authenticate, KeyRing, mayUseModel, requireAdmin } from './auth.ts';
import { InvalidRequestError, ModelNotFoundError, OpenLoraError, ServiceUnavailableError, toOpenAIError } from './errors.ts';
import type { Engine } from '../native/engine.ts';
import { silentLogger, type LoggerLike } from './logger.ts';
import type { Generation } from './generate.ts';
import { addMetricsSource, scrape, type ModelSnapshot } from './metrics.ts';
import { ModelRegistry } from './registry.ts';
import { disposeGrammarService } from './structured/constrain.ts';
import { requestContext, requestId, requestLog, setMetricModel } from './request-context.ts';
import { chatCompletions } from './routes/chat.ts';
import { completions } from './routes/completions.ts';
import { listModels, retrieveModel } from './routes/models.ts';
import { createResponse, deleteResponse, listInputItems, retrieveResponse } from './routes/responses.ts';
import { detokenize, tokenize, version } from './routes/tokenize.ts';
import { ResponseStore } from './responses/store.ts';
import type { ReasoningParserSetting } from './reasoning.ts';
import { loadLoraAdapter, rescanLoraAdapters, unloadLoraAdapter } from './routes/admin.ts';
import type { RouteContext } from './routes/context.ts';
import { servesModel } from './resolve.ts';
import { OperatorPins, pinLoraAdapter, prefetchLoraAdapter, unpinBeforeUnload, unpinLoraAdapter } from './routes/admin-pins.ts';
import { consoleRouter, type ConsoleRouter } from './console/index.ts';
import { loadTokenizer, ModelTokenizer } from './tokenizer.ts';
import type { ToolFormatName } from './tools/format.ts';
import { requireJsonBody, verifyJsonBody } from './body.ts';
import { discoverAdapters } from './discover.ts';
import { buildUpstreams, forward, pickUpstream, proxiedEndpoint, requireOneModelKey } from './upstream.ts';

/** One base model to serve. */
export interface OpenLoraModel {
  /** Name clients use as `model` (and as the `BASE` in `BASE:ADAPTER`). */
  name: string;
  /** The engine (native/engine.ts: `Engine.load(dir)`, or `new Engine(testDouble)`); its info gives context length, vocabulary, slots. */
  engine: Engine;
  /** A Hugging Face model folder holding tokenizer.json (+ configs), or a loaded tokenizer. */
  tokenizer: string | ModelTokenizer;
  /** The adapters of this base. */
  adapters: AdapterProvider;
  /** Engine sequences admitted at once (the engine's maxNumSeqs); more requests queue (default: no limit). */
  maxRunningSequences?: number;
  /** Tool-call format of the model's outputs, when its chat template's markers do not show it (plugin/tools/format.ts). */
  toolCallFormat?: ToolFormatName;
  /** Reasoning outputs (`<think>` blocks) split from the answer: `auto` (default: when the template writes the tags), `think`, `none`. */
  reasoningParser?: ReasoningParserSetting;
}

/** Options of `openLora`. */
export interface OpenLoraOptions {
  /** The base models, or a promise of them (requests wait for it; a rejection makes them 503). */
  models: OpenLoraModel[] | Promise<OpenLoraModel[]>;
  /** pino-compatible logger (default: silent). */
  logger?: LoggerLike;
  /** `express.json` body limit (default: config/schema.ts `bodyLimit`, 16mb: token-id prompts are large). */
  bodyLimit?: string | number;
  /** Named compositions (config `compositions`): usable as `model` by any client, listed in /v1/models. */
  compositions?: Record<string, CompositionConfig>;
  /** Mount the vLLM runtime adapter API (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`; plugin/routes/admin.ts). */
  allowRuntimeLoraUpdating?: boolean;
  /** API keys (config `keys`); none = open. Admin routes then need a key with `admin: true`. */
  keys?: KeyConfig[];
  /** Upstreams for models not served here (config `upstreams`). */
  upstreams?: UpstreamConfig[];
  /** Sequences (a request counts prompts x n) allowed to wait per base model before 429 (default: config/schema.ts `maxQueuedRequests`). */
  maxQueuedRequests?: number;
  /** Serve the operator console at `/console` (config `console`; plugin/console/). */
  console?: boolean;
}

/** The router plus its lifecycle. */
export interface OpenLoraRouter extends Router {
  /** Resolves when every tokenizer is loaded; rejects with the loading error. */
  ready: Promise<void>;
  /**
   * Stop taking requests (503), let in-flight ones finish for up to `graceMs` (default 0), cancel
   * the rest and wait until their sequences ended and leases are released. Engines are not disposed.
   */
  close(graceMs?: number): Promise<void>;
  /** Requests generating now. */
  readonly inFlight: number;
}

async function buildRegistry(options: OpenLoraOptions) {
  const models = await options.models;
  if (models.length === 0) throw new Error('openLora: no models configured');
  const inits = await Promise.all(
    models.map(async (m) => ({
      name: m.name,
      engine: m.engine,
      adapters: m.adapters,
      maxRunningSequences: m.maxRunningSequences,
      toolCallFormat: m.toolCallFormat,
      reasoningParser: m.reasoningParser,
      tokenizer: typeof m.tokenizer === 'string' ? await loadTokenizer(m.tokenizer) : m.tokenizer,
    })),
  );
  return { registry: new ModelRegistry(inits, options.logger, options.compositions), inits };
}

/** Build the OpenAI-compatible router (`/v1/models`, `/v1/chat/completions`, `/v1/completions`, vLLM's `/tokenize`, `/detokenize`, `/version`, `/health`, `/ready`, `/metrics`, and `/console` when asked). */
export function openLora(options: OpenLoraOptions): OpenLoraRouter {
  const logger = options.logger ?? silentLogger;
  const built = buildRegistry(options);
  const loading = built.then((b) => b.registry);
  loading.catch((err: unknown) => logger.error({ err }, 'openlora: loading models failed'));
  const inFlight = new Set<Generation>();
  /** Responses being proxied to an upstream (waited for, then cut, by `close`). */
  const proxied = new Set<Response>();
  const ring = new KeyRing(options.keys ?? []);
  const upstreams = buildUpstreams(options.upstreams ?? [], !ring.open, logger);
  const maxQueued = options.maxQueuedRequests ?? DEFAULTS.maxQueuedRequests;
  const admissions = new Map<string, Admission>();
  const unregister: Array<() => void> = [];
  let closed = false;
  let loaded = false;

  function admission(model: string, capacity?: number): Admission {
    let a = admissions.get(model);
    if (!a) {
      a = new Admission(capacity ?? Infinity, maxQueued);
      admissions.set(model, a);
    }
    return a;
  }

  /** Per base model, what `/metrics` and the console report (one source for both). */
  const snapshots = new Map<string, () => ModelSnapshot>();
  // One metrics source per base model, once the models are known.
  built.then(
    ({ inits }) => {
      loaded = true;
      if (closed) return;
      for (const m of inits) {
        const adm = admission(m.name, m.maxRunningSequences);
        const snapshot = (): ModelSnapshot => {
          const st = m.engine.stats();
          return {
            waiting: adm.waiting,
            runningRequests: adm.runningRequests,
            runningSequences: st.running,
            scoringPrompts: st.scoring,
            engineWaiting: st.waiting,
            kvBlocksTotal: st.kvBlocksTotal,
            // Unreferenced prefix-cache blocks are evictable: free, as vLLM counts them.
            kvBlocksFree: st.kvBlocksFree + st.kvBlocksCached,
            kvBlocksCached: st.kvBlocksCached,
            maxLoras: m.engine.info().maxLoras,
            memory: { weights: st.weightBytes, kvCache: st.kvCacheBytes, kvUsed: st.kvUsedBytes, adapters: st.adapterBytes },
            runningAdapters: adm.runningAdapterIds(),
            waitingAdapters: adm.waitingAdapterIds(),
          };
        };
        snapshots.set(m.name, snapshot);
        unregister.push(addMetricsSource({ model: m.name, snapshot }));
      }
    },
    () => {},
  );

  /** Requests whose generation is starting (pinning adapters): close() fails them past the grace. */
  const starting = new Set<(err: Error) => void>();
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
    async starting(start) {
      // NOTE(why): a generation that is still starting (waiting for an adapter slot) is not yet
      // tracked; close() waits for it like an in-flight one, and past the grace fails it with the
      // shutdown's 503 at once (the generation, if it starts later, is aborted, its pins released).
      let fail!: (err: Error) => void;
      const cut = new Promise<never>((_, reject) => (fail = reject));
      starting.add(fail);
      try {
        return await Promise.race([start, cut]);
      } catch (err) {
        void start.then((gen) => gen.abort(err as Error), () => {});
        throw err;
      } finally {
        starting.delete(fail);
      }
    },
    admission: (model) => admission(model),
  };

  /** Stored Responses API responses (previous_response_id, GET / DELETE /v1/responses/{id}). */
  const responses = new ResponseStore();
  /** Adapters pinned by an operator (POST /v1/pin_lora_adapter), released on close. */
  const pins = new OperatorPins();
  const router = express.Router() as OpenLoraRouter;
  const json = [
    express.json({ limit: options.bodyLimit ?? DEFAULTS.bodyLimit, verify: verifyJsonBody(upstreams.length > 0) }),
    requireJsonBody,
  ];

  router.use(requestContext(logger));
  router.get('/health', function health(_req: Request, res: Response) {
    res.json({ status: 'ok' });
  });
  router.get('/ready', function ready(_req: Request, res: Response) {
    const state = closed ? 'closing' : loaded ? 'ready' : 'loading';
    res.status(state === 'ready' ? 200 : 503).json({ status: state });
  });
  router.get('/metrics', async function metrics(_req: Request, res: Response) {
    const m = await scrape();
    res.set('content-type', m.contentType).send(m.text);
  });

  router.get('/version', version);
  // vLLM's tokenizer routes sit at the root; they name a model, so keys apply as on /v1.
  const discover = discoverAdapters(ctx.registry);  // adapter folders copied after start-up, found by name
  router.post('/tokenize', authenticate(ring), json, discover, tokenize(ctx));
  router.post('/detokenize', authenticate(ring), json, detokenize(ctx));

  router.use('/v1', authenticate(ring));
  router.get('/v1/models', listModels(ctx));
  router.get('/v1/models/*id', retrieveModel(ctx));
  if (options.allowRuntimeLoraUpdating) {
    router.post('/v1/load_lora_adapter', requireAdmin, json, loadLoraAdapter(ctx));
    router.post('/v1/unload_lora_adapter', requireAdmin, json, unpinBeforeUnload(ctx, pins), unloadLoraAdapter(ctx));
    router.post('/v1/rescan_lora_adapters', requireAdmin, json, rescanLoraAdapters(ctx));
    router.post('/v1/pin_lora_adapter', requireAdmin, json, pinLoraAdapter(ctx, pins));
    router.post('/v1/unpin_lora_adapter', requireAdmin, json, unpinLoraAdapter(ctx, pins));
    router.post('/v1/prefetch_lora_adapter', requireAdmin, json, prefetchLoraAdapter(ctx, pins));
  }
  let consoleApp: ConsoleRouter | undefined;
  if (options.console) {
    consoleApp = consoleRouter({ ring, registry: ctx.registry, snapshots, pins, runtimeUpdating: Boolean(options.allowRuntimeLoraUpdating) });
    router.use('/console', consoleApp);
  }
  // Every other POST body is parsed here once; a model not served here goes to its upstream.
  router.post('/v1/*rest', json, discover);
  router.post('/v1/*rest', json, async function upstreamDispatch(req: Request, res: Response, next: NextFunction) {
    const model = (req.body as { model?: unknown } | undefined)?.model;
    if (upstreams.length === 0 || typeof model !== 'string') return next();
    // Served here (the route checks the key): the parsed name is kept for the route.
    if (servesModel(res, await ctx.registry(), model)) return next();
    const u = pickUpstream(upstreams, model);
    if (!u) return next();
    if (!mayUseModel(accessOf(req), model)) throw new ModelNotFoundError(model);
    // Never forward dot segments: `/v1/../x` would reach upstream routes outside /v1 with our key.
    if (/(^|\/)\.\.?(\/|$)/.test(req.path)) throw new InvalidRequestError('The request path must not contain "." or ".." segments.', null);
    // Only the inference endpoints, by exact path: the upstream is called with the operator's key (404 otherwise).
    const endpoint = proxiedEndpoint(req.method, req.path);
    requireOneModelKey(req);
    if (closed) throw new ServiceUnavailableError('The server is shutting down.');
    setMetricModel(res, `upstream:${u.pattern}`);
    proxied.add(res);
    res.once('close', () => proxied.delete(res));
    forward(u, endpoint, req, res, next);
  });
  router.post('/v1/chat/completions', chatCompletions(ctx));
  router.post('/v1/completions', completions(ctx));
  router.post('/v1/responses', createResponse(ctx, responses));
  router.get('/v1/responses/:id', retrieveResponse(responses));
  router.get('/v1/responses/:id/input_items', listInputItems(responses));
  router.delete('/v1/responses/:id', deleteResponse(responses));
  // A known route asked with another method: 405 naming the method it takes (vLLM / FastAPI do so), not a 404.
  for (const [path, allow] of [['/v1/chat/completions', 'POST'], ['/v1/completions', 'POST'], ['/v1/responses', 'POST'], ['/v1/models', 'GET']] as const) {
    router.all(path, function methodNotAllowed(req: Request, res: Response, next: NextFunction) {
      if (req.method === 'OPTIONS') return next();  // CORS preflight: for the application's CORS middleware, as before
      res.set('allow', allow);
      throw new OpenLoraError(405, `Method ${req.method} is not allowed for ${req.originalUrl}: use ${allow}.`, 'invalid_request_error', null, 'method_not_allowed');
    });
  }
  router.all('/v1/*rest', function unknownRoute(req: Request) {
    throw new OpenLoraError(404, `Unknown request URL: ${req.method} ${req.originalUrl}.`, 'invalid_request_error', null, 'unknown_url');
  });
  router.use(function openAIErrors(err: unknown, req: Request, res: Response, _next: NextFunction) {
    const out = toOpenAIError(err);
    const log = requestLog(res, logger);
    // The request's bound logger already carries reqId; the fallback logger does not.
    const at = res.locals.log ? { url: req.originalUrl } : { reqId: requestId(res), url: req.originalUrl };
    if (out.status === 503) log.warn({ ...at, error: out.body.error }, 'request refused: unavailable');
    else if (out.status >= 500) log.error({ err, ...at }, 'request failed');
    else log.debug({ ...at, error: out.body.error }, 'request refused');
    if (res.headersSent) {
      // A stream already started handles its own errors; anything else can only be cut off.
      if (!res.writableEnded) res.end();
      return;
    }
    res.status(out.status).set(out.headers).json(out.body);
  });

  router.ready = loading.then(() => undefined);
  router.ready.catch(() => {});
  Object.defineProperty(router, 'inFlight', { get: () => inFlight.size });
  router.close = async (graceMs = 0) => {
    closed = true;
    consoleApp?.close();
    const shutting = new ServiceUnavailableError('The server is shutting down.');
    for (const a of admissions.values()) a.close(shutting);
    const until = Date.now() + graceMs;
    while (inFlight.size + proxied.size + starting.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (const r of proxied) r.destroy();
    for (const fail of [...starting]) fail(shutting);
    const gens = [...inFlight];
    for (const g of gens) g.abort(shutting);
    await Promise.all(gens.map((g) => g.settled));
    // NOTE(why): a handler waiting on its generation (a prompt scoring) answers the 503 only as the
    // generation settles, and the error middleware writes it a few microtasks after the handler
    // untracks itself: let them finish before the caller closes the connections.
    const drainUntil = Date.now() + 2000;
    while (inFlight.size > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setImmediate(r));
    pins.releaseAll();
    for (const u of unregister.splice(0)) u();
    const registry = await loading.catch(() => undefined);
    await Promise.all((registry?.list() ?? []).map((m) => disposeGrammarService(m)));
  };
  return router;
}

export { ModelTokenizer, loadTokenizer } from './tokenizer.ts';
export { Engine } from '../native/engine.ts';
export type { LoggerLike } from './logger.ts';
export { requireAdmin } from './auth.ts';
