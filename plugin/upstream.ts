/**
 * Upstream passthrough: a request whose `model` is not served here and matches an upstream's
 * `pattern` goes, unchanged, to that OpenAI-compatible server (http-proxy-middleware); the
 * response (SSE included) streams back unbuffered, and a client abort reaches the upstream.
 *
 * The body was already parsed (to read `model`), so the raw bytes kept by the JSON parser's
 * `verify` hook are written to the upstream request (the `fixRequestBody` approach). The
 * client's Authorization is replaced by the upstream's `apiKey`; when openlora keys are
 * configured it is dropped otherwise (it is an openlora key). Connection failures answer 502,
 * an upstream idle past `timeoutMs` 504, both as OpenAI error bodies.
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import type { UpstreamConfig } from '../config/schema.ts';
import { toOpenAIError, UpstreamError } from './errors.ts';
import { GlobList } from './glob.ts';

const RAW = Symbol('openlora.rawBody');

/** `express.json` `verify` hook keeping the raw body for the proxy. */
export function keepRawBody(req: IncomingMessage, _res: ServerResponse, buf: Buffer): void {
  (req as unknown as Record<symbol, Buffer>)[RAW] = buf;
}

/** One configured upstream with its proxy. */
export interface Upstream {
  pattern: string;
  matches(model: string): boolean;
  proxy: RequestHandler;
}

function answer(res: ServerResponse | Socket, err: UpstreamError): void {
  if (!('writeHead' in res)) {
    res.destroy();
    return;
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const out = toOpenAIError(err);
  res.writeHead(out.status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(out.body));
}

/**
 * Build the proxies of `configs`.
 * @param dropClientAuth Remove the client's Authorization when the upstream has no apiKey.
 * @param logger Where upstream failures are logged (never with headers).
 */
export function buildUpstreams(
  configs: readonly UpstreamConfig[],
  dropClientAuth: boolean,
  logger: { warn(obj: object, msg: string): void },
): Upstream[] {
  return configs.map((u) => {
    const globs = new GlobList([u.pattern]);
    const proxy = createProxyMiddleware<Request, Response>({
      target: u.url,
      changeOrigin: true,
      xfwd: false,
      pathRewrite: (path) => path.replace(/^\/v1(?=\/|$)/, ''),
      on: {
        proxyReq(proxyReq: ClientRequest, req: Request) {
          if (u.apiKey) proxyReq.setHeader('authorization', `Bearer ${u.apiKey}`);
          else if (dropClientAuth) proxyReq.removeHeader('authorization');
          const raw = (req as unknown as Record<symbol, Buffer | undefined>)[RAW];
          if (raw) {
            proxyReq.removeHeader('transfer-encoding');
            proxyReq.setHeader('content-length', raw.length);
            proxyReq.write(raw);
          }
          proxyReq.setTimeout(u.timeoutMs, () => {
            proxyReq.destroy(Object.assign(new Error(`upstream idle for ${u.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
          });
        },
        error(err: Error, req: IncomingMessage, res: ServerResponse | Socket) {
          const code = (err as NodeJS.ErrnoException).code ?? '';
          const timeout = code === 'ETIMEDOUT' || code === 'ESOCKETTIMEDOUT';
          logger.warn({ upstream: u.url, code, url: req.url }, 'upstream request failed');
          answer(
            res,
            timeout
              ? new UpstreamError(504, `The upstream for this model did not answer within ${u.timeoutMs} ms.`)
              : new UpstreamError(502, `The upstream for this model could not be reached (${code || err.message}).`),
          );
        },
      },
    });
    return { pattern: u.pattern, matches: (m: string) => globs.test(m), proxy };
  });
}

/** The first upstream whose pattern matches `model`. */
export function pickUpstream(upstreams: readonly Upstream[], model: string): Upstream | undefined {
  return upstreams.find((u) => u.matches(model));
}

/** Run the proxy as a middleware step (it answers the request itself). */
export function forward(u: Upstream, req: Request, res: Response, next: NextFunction): void {
  void u.proxy(req, res, next);
}
