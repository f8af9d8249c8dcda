/**
 * The runnable gateway (`npm start`): an Express app with the openlora router mounted,
 * serving the configured models (by default the embedded tiny-shakespeare demo and its four
 * adapters) on 127.0.0.1:8000.
 *
 * Exports `startServer` for tests; listens only when run directly.
 */
import cors from 'cors';
import express from 'express';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../config/load.ts';
import type { Config, CorsConfig } from '../config/schema.ts';
import { createOpenLora, type OpenLora } from '../plugin/server.ts';

/** A listening gateway: its base URL (`http://host:port/v1`) and a `close()` that frees the engine. */
export interface RunningServer {
  url: string;
  log: OpenLora['log'];
  /** The mounted openlora instance (engines and adapter managers per model). */
  openlora: OpenLora;
  server: Server;
  /**
   * Stop accepting connections, let running requests finish for up to `graceMs` (default 0: cut
   * them at once), close the remaining connections, free the engines. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * The CORS middleware for `c` (the `cors` package): preflights answered 204 before any key check,
 * the request's headers allowed, `x-request-id` and `retry-after` readable by the page.
 * @returns undefined when no origin is allowed (no CORS headers at all).
 */
export function corsFor(c: CorsConfig): express.RequestHandler | undefined {
  if (c.allowedOrigins.length === 0) return undefined;
  return cors({
    origin: c.allowedOrigins.includes('*') ? '*' : c.allowedOrigins,
    credentials: c.allowCredentials,
    exposedHeaders: ['x-request-id', 'retry-after'],
    maxAge: 600,
  });
}

/**
 * Load the models in `config`, mount the router and listen.
 * @throws ConfigError / model load errors (the message names the file or field).
 */
export async function startServer(config: Config): Promise<RunningServer> {
  const openlora = await createOpenLora(config);
  const app = express();
  app.disable('x-powered-by');
  const corsMiddleware = corsFor(config.cors);
  if (corsMiddleware) app.use(corsMiddleware);  // before the router: a preflight carries no key
  app.use(openlora.router);
  // Paths outside the router (/v1, /console): an OpenAI-style JSON 404, not Express's HTML page.
  app.use((req: express.Request, res: express.Response) => {
    res.status(404).json({
      error: { message: `Unknown request URL: ${req.method} ${req.originalUrl}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' },
    });
  });
  // NOTE: express 5's app.listen passes a listen error to its callback, so use the http server's
  // own events: a port in use must reject with EADDRINUSE, not "resolve" an unbound server.
  const server = createServer(app);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await openlora.close();
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot listen on ${config.host}:${config.port}: ${e.code ?? ''} ${e.message}`.replace(/\s+/g, ' '));
  }
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}/v1`,
    log: openlora.log,
    openlora,
    server,
    close: (graceMs = 0) =>
      (closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r())); // stop accepting
        server.closeIdleConnections();
        await openlora.router.close(graceMs); // finish or cut running requests
        server.closeAllConnections();
        await closed;
        await openlora.close();
      })()),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const config = loadConfig();
    const running = await startServer(config);
    // One JSON line with `url` (pino): scripts and tests read the port from it (PORT=0).
    // NOTE(why): the handlers stay (not `once`) and a repeated signal is ignored: under `npm
    // start` a terminal's Ctrl-C reaches the server twice (the process group's SIGINT and npm's
    // forwarded one), and with `once` the second hit the default action and cut the graceful
    // shutdown short (shutdownGraceMs bounds it anyway). They are in place before the listening
    // line announces the server: a SIGTERM right after it killed the process outright.
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      running.log.info({ event: 'shutdown', signal, graceMs: config.shutdownGraceMs }, 'shutting down');
      running.close(config.shutdownGraceMs).then(
        () => {
          running.log.info({ event: 'stopped' }, 'stopped');
          process.exit(0);
        },
        (err: unknown) => {
          running.log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    running.log.info({ event: 'listening', url: running.url }, `openlora listening on ${running.url} (models: ${config.models.map((m) => m.name).join(', ')})`);
  } catch (err) {
    console.error(`openlora: ${(err as Error).message}`);
    process.exit(1);
  }
}
