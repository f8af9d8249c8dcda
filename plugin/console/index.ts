/**
 * The operator console: `GET /console` (one static page, no build step) and its admin data
 * endpoints, mounted by `openLora()` under `/console` when `console: true`.
 *
 * - `GET /console`, `GET /console/static/*`: the page, its script and style, and uPlot (from
 *   node_modules, pinned in package.json). The page holds no data: it asks for an admin key
 *   (kept in sessionStorage, sent as `Authorization: Bearer`, never in a URL).
 * - `GET /console/api/state`: the ConsoleState JSON (plugin/console/state.ts), for the page
 *   and for scripts.
 * - `GET /console/api/events`: the same as server-sent events, a tick every `tickMs`.
 * With keys configured the data endpoints need an admin key: 401 without a valid key, 403 for
 * a key without `admin: true` (the same checks as the admin routes). Admin actions go to the
 * existing routes (`/v1/load_lora_adapter`, ...; plugin/routes/admin*.ts).
 */
import express, { type Request, type Response, type Router } from 'express';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { authenticate, requireAdmin, type KeyRing } from '../auth.ts';
import type { ModelSnapshot } from '../metrics.ts';
import type { ModelRegistry } from '../registry.ts';
import type { OperatorPins } from '../routes/admin-pins.ts';
import { SseWriter } from '../sse.ts';
import { MetricHistory } from './history.ts';
import { consoleState, modelStates, StateDiff, type StateSources } from './state.ts';

/** What the console reads; all of it owned by the router. */
export interface ConsoleOptions {
  ring: KeyRing;
  registry(): Promise<ModelRegistry>;
  snapshots: ReadonlyMap<string, () => ModelSnapshot>;
  pins: OperatorPins;
  runtimeUpdating: boolean;
  /** SSE tick period in ms (default 250). */
  tickMs?: number;
}

/** The console router plus the sampler's stop. */
export interface ConsoleRouter extends Router {
  /** Stop the metric sampler and end the open event streams. */
  close(): void;
}

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'static');
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));

/** File name → [folder, content type] of everything the page loads. */
const FILES: Record<string, [string, string]> = {
  'console.js': [STATIC_DIR, 'text/javascript; charset=utf-8'],
  'console.css': [STATIC_DIR, 'text/css; charset=utf-8'],
  'table.js': [STATIC_DIR, 'text/javascript; charset=utf-8'],
  'playground.js': [STATIC_DIR, 'text/javascript; charset=utf-8'],
  'sse.js': [STATIC_DIR, 'text/javascript; charset=utf-8'],
  'uPlot.iife.min.js': [UPLOT_DIR, 'text/javascript; charset=utf-8'],
  'uPlot.min.css': [UPLOT_DIR, 'text/css; charset=utf-8'],
};

/** Headers of every console response: no framing, no sniffing, scripts and fetches from this origin only. */
function secure(res: Response): void {
  res.set({
    'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  });
}

/** Build the `/console` router (mount it at `/console`). */
export function consoleRouter(opts: ConsoleOptions): ConsoleRouter {
  const history = new MetricHistory(opts.snapshots);
  history.start();
  const tickMs = opts.tickMs ?? 250;
  const streams = new Set<() => void>();
  const router = express.Router() as ConsoleRouter;
  const sources = async (): Promise<StateSources> => ({
    registry: await opts.registry(),
    snapshots: opts.snapshots,
    history,
    pins: opts.pins,
    runtimeUpdating: opts.runtimeUpdating,
  });

  const page = readFileSync(join(STATIC_DIR, 'index.html'), 'utf8');
  router.get('/', function consolePage(req: Request, res: Response) {
    // The page's URLs are relative to <base href>: `/console/` wherever the router is mounted.
    const base = `${req.baseUrl}/`.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`);
    secure(res);
    res.set('cache-control', 'no-cache').type('html').send(page.replace('%BASE%', base));
  });
  router.get('/static/:file', function consoleStatic(req: Request, res: Response, next) {
    const f = FILES[req.params.file as string];
    if (!f) return next();
    secure(res);
    res.set('cache-control', 'no-cache').type(f[1]).sendFile(join(f[0], req.params.file as string));
  });

  const api = express.Router();
  api.use(authenticate(opts.ring), requireAdmin);
  api.get('/state', async function consoleStateJson(_req: Request, res: Response) {
    secure(res);
    res.set('cache-control', 'no-store').json(consoleState(await sources()));
  });
  api.get('/events', async function consoleEvents(req: Request, res: Response) {
    const src = await sources();
    secure(res);
    const sse = new SseWriter(res);
    const diff = new StateDiff();
    const first = consoleState(src);
    sse.send({ type: 'state', ...first });
    diff.primed(first);
    const timer = setInterval(() => {
      if (sse.closed) return stop();
      sse.send(diff.tick(modelStates(src), history));
    }, tickMs);
    const stop = () => {
      clearInterval(timer);
      streams.delete(stop);
      if (!res.writableEnded) res.end();
    };
    streams.add(stop);
    req.once('close', stop);
  });
  router.use('/api', api);

  router.close = () => {
    history.stop();
    for (const s of [...streams]) s();
  };
  return router;
}
