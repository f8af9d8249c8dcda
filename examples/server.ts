/**
 * The runnable gateway (`npm start`): an Express app with the openlora router mounted,
 * serving the configured models (by default the embedded tiny-shakespeare demo and its four
 * adapters) on 127.0.0.1:8000.
 *
 * Exports `startServer` for tests; listens only when run directly.
 */
import express from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { createOpenLora, type OpenLora } from '../plugin/gateway.ts';

/** A listening gateway: its base URL (`http://host:port/v1`) and a `close()` that frees the engine. */
export interface RunningServer {
  url: string;
  log: OpenLora['log'];
  /** The mounted openlora instance (engines and adapter managers per model). */
  openlora: OpenLora;
  server: Server;
  close(): Promise<void>;
}

/**
 * Load the models in `config`, mount the router and listen.
 * @throws ConfigError / model load errors (the message names the file or field).
 */
export async function startServer(config: Config): Promise<RunningServer> {
  const openlora = await createOpenLora(config);
  const app = express();
  app.disable('x-powered-by');
  app.use(openlora.router);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}/v1`,
    log: openlora.log,
    openlora,
    server,
    close: () =>
      (closing ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await openlora.close();
      })()),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const config = loadConfig();
    const running = await startServer(config);
    running.log.info(`openlora listening on ${running.url} (models: ${config.models.map((m) => m.name).join(', ')})`);
    const stop = () => {
      running.close().then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  } catch (err) {
    console.error(`openlora: ${(err as Error).message}`);
    process.exit(1);
  }
}
