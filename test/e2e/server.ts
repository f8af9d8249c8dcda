/**
 * Test helper: the real gateway (native engine, demo model, four adapters) listening on an
 * ephemeral loopback port, as `npm start` runs it.
 */
import { defaultConfigInput, parseConfig } from '../../config/load.ts';
import { startServer, type RunningServer } from '../../examples/server.ts';
import { post } from '../gateway/helpers.ts';

/** Start the demo gateway on 127.0.0.1:<random port> with logging off; `extra` adds config fields. */
export async function startDemo(extra: Record<string, unknown> = {}): Promise<RunningServer> {
  const config = parseConfig({ ...defaultConfigInput(), port: 0, logLevel: 'silent', engine: { threads: 2 }, ...extra });
  return startServer(config);
}

/** POST JSON to `url + path`, returning status and parsed body. */
export async function postJson(url: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
  return post(url + path, body);
}
