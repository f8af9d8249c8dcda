/**
 * Helpers for the gateway tests: an openlora router over the fake engine, listening on a
 * loopback port, with a memory logger; and small HTTP helpers.
 */
import express, { type Express } from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { openLora, type OpenLoraOptions, type OpenLoraRouter } from '../../plugin/index.ts';
import { demoTokenizer, FakeAdapters, ScriptedEngine, type Script, type ScriptedEngineOptions } from '../plugin/fakes.ts';

/** Listen on 127.0.0.1:<random>; `url` has no trailing slash and no /v1. */
export async function listen(app: Express): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A logger that keeps every call as one JSON string (to check what is and is not logged). */
export function memoryLogger() {
  const lines: string[] = [];
  const write = (level: string) => (obj: object | string, msg?: string) => {
    lines.push(JSON.stringify({ level, obj: obj instanceof Error ? String(obj) : obj, msg }, (_k, v) => (v instanceof Error ? `${v.name}: ${v.message}` : v)));
  };
  const logger = { lines, debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
  return logger;
}

/** A listening app serving the fake model `tiny` (adapters shout, whisper, romeo) with extra router options. */
export async function fakeServer(
  script: Script,
  opts: Omit<OpenLoraOptions, 'models'> & { maxRunningSequences?: number; engine?: ScriptedEngineOptions } = {},
) {
  const tokenizer = await demoTokenizer();
  const engine = new ScriptedEngine(script, opts.engine ?? {});
  const adapters = new FakeAdapters('tiny');
  const logger = (opts.logger as ReturnType<typeof memoryLogger> | undefined) ?? memoryLogger();
  const router: OpenLoraRouter = openLora({
    ...opts,
    logger,
    models: [{ name: 'tiny', engine: engine.asEngine(), tokenizer, adapters, maxRunningSequences: opts.maxRunningSequences }],
  });
  const app = express();
  app.use(router);
  await router.ready;
  const l = await listen(app);
  return {
    ...l,
    app,
    router,
    engine,
    adapters,
    logger,
    async close() {
      await router.close();
      await l.close();
    },
  };
}

/** Status, headers, raw text and the body parsed as JSON (the text when it is not JSON). */
export async function readResponse(res: Response): Promise<{ status: number; headers: Headers; body: any; text: string }> {
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* keep text */
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** POST JSON with optional bearer key; returns status, headers and parsed body. */
export async function post(url: string, body: unknown, key?: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return readResponse(res);
}

/** GET with optional bearer key. */
export async function get(url: string, key?: string) {
  const res = await fetch(url, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return readResponse(res);
}

/** Poll `cond` every 10 ms until true (throws after `ms`). */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
