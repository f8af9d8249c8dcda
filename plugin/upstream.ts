/**
 * Upstream passthrough: a request whose `model` is not served here and matches an upstream's
 * `pattern` goes, unchanged, to that OpenAI-compatible server (http-proxy-middleware); the
 * response (SSE included) streams back unbuffered, and a client abort reaches the upstream.
 *
 * Only the OpenAI inference endpoints are proxied (`PROXIED_ENDPOINTS`), by exact path: the
 * upstream is called with the operator's key, so `/v1/fine_tuning/jobs`, `/v1/images/...`,
 * `/v1/files`, ... with an upstream model are a 404 that never reaches it, and what is sent
 * upstream is the allow-list's own path (plus the client's query), never the client's spelling.
 *
 * The body was already parsed (to read `model`), so the raw bytes kept by the JSON parser's
 * `verify` hook are written to the upstream request (the `fixRequestBody` approach). The
 * client's Authorization is replaced by the upstream's `apiKey` (its `api-key` / `x-api-key` are
 * dropped then); when openlora keys are configured it is dropped otherwise (it is an openlora
 * key). Cookies, Proxy-Authorization and hop-by-hop headers never leave, and the upstream's
 * Set-Cookie is not passed back. Connection failures answer 502, an upstream idle past
 * `timeoutMs` 504, both as OpenAI error bodies.
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import type { UpstreamConfig } from '../config/schema.ts';
import { InvalidRequestError, toOpenAIError, UpstreamError, UpstreamPathError } from './errors.ts';
import { GlobList } from './glob.ts';

const RAW = Symbol('openlora.rawBody');
/** The allow-listed endpoint a request is proxied to, set by `forward`. */
const ENDPOINT = Symbol('openlora.upstreamEndpoint');

/** The OpenAI inference endpoints (POST, after the `/v1` mount) a model served by an upstream is proxied on. */
export const PROXIED_ENDPOINTS: readonly string[] = ['/chat/completions', '/completions', '/embeddings', '/responses'];

/**
 * Client headers that never reach an upstream: cookies, proxy credentials and the hop-by-hop
 * headers of RFC 9110 section 7.6.1 (those the client's Connection header names are added per request).
 */
const DROPPED_HEADERS = ['cookie', 'proxy-authorization', 'proxy-connection', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade'];
/** The client's own upstream credentials, dropped when the operator's `apiKey` replaces them. */
const CLIENT_CREDENTIALS = ['authorization', 'api-key', 'x-api-key'];

/**
 * The keys of the top-level JSON object in `buf`, in order, repeats included (JSON.parse keeps
 * only the last of a repeated key; another parser may keep the first). A byte scan: strings at
 * depth 1 that open the object or follow a comma are its keys, decoded as JSON strings.
 * @returns [] when `buf` is not an object.
 */
export function topLevelKeys(buf: Uint8Array): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === 0x22) {  // a string: skip it whole
      const start = i;
      for (i++; i < buf.length && buf[i] !== 0x22; i++) if (buf[i] === 0x5c) i++;
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(Buffer.from(buf.subarray(start, i + 1)).toString('utf8')) as string);
        expectKey = false;
      }
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      expectKey = depth === 1 && c === 0x7b;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c && depth === 1) expectKey = true;
  }
  return keys;
}

/**
 * @throws InvalidRequestError (400, param `model`) when the raw body kept for the proxy names
 *   `model` more than once: the upstream might read another one than the key was checked against.
 */
export function requireOneModelKey(req: IncomingMessage): void {
  const raw = (req as unknown as Record<symbol, Buffer | undefined>)[RAW];
  if (raw && topLevelKeys(raw).filter((k) => k === 'model').length > 1) {
    throw new InvalidRequestError('The request body names `model` more than once; name it once.', 'model');
  }
}

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

/**
 * The allow-listed endpoint (after `/v1`) that a request on `path` is proxied to.
 *
 * The comparison is exact, on the path as it arrived: a prefix (`/v1/chat/completions/x`), a
 * percent-encoded spelling (`/v1/chat%2Fcompletions`, `..%2f`), a dot segment, a trailing slash
 * or another case matches none, so nothing needs decoding or normalising first.
 * @param method The request method (for the message).
 * @param path The request path relative to the router (`/v1/...`, no query).
 * @throws UpstreamPathError (404) when `path` is not one of `/v1` + `PROXIED_ENDPOINTS`.
 */
export function proxiedEndpoint(method: string, path: string): string {
  const endpoint = PROXIED_ENDPOINTS.find((e) => path === `/v1${e}`);
  if (endpoint === undefined) throw new UpstreamPathError(method, path, PROXIED_ENDPOINTS.map((e) => `/v1${e}`));
  return endpoint;
}

/** Headers a client's Connection header cannot remove: the proxy sets them (host, length) or the body needs them. */
const FRAMING = new Set(['host', 'content-length', 'content-type']);

/** Remove from the upstream request every header of `DROPPED_HEADERS` and those the client's Connection header names. */
function dropClientHeaders(proxyReq: ClientRequest, req: IncomingMessage): void {
  const named = (typeof req.headers.connection === 'string' ? req.headers.connection.split(',') : []).map((n) => n.trim().toLowerCase());
  for (const h of [...DROPPED_HEADERS, ...named.filter((n) => n && !FRAMING.has(n))]) proxyReq.removeHeader(h);
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
      // The allow-listed path set by `forward`, never the client's spelling; the query is kept.
      pathRewrite: (path, req) => {
        const endpoint = (req as unknown as Record<symbol, string | undefined>)[ENDPOINT];
        if (endpoint === undefined) throw new Error('upstream proxy reached without an allow-listed endpoint');
        const q = path.indexOf('?');
        return q < 0 ? endpoint : endpoint + path.slice(q);
      },
      on: {
        proxyReq(proxyReq: ClientRequest, req: Request) {
          dropClientHeaders(proxyReq, req);
          proxyReq.setHeader('connection', 'close');  // as http-proxy sets it without an agent
          if (u.apiKey) {
            for (const h of CLIENT_CREDENTIALS) proxyReq.removeHeader(h);
            proxyReq.setHeader('authorization', `Bearer ${u.apiKey}`);
          } else if (dropClientAuth) proxyReq.removeHeader('authorization');
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
        proxyRes(proxyRes: IncomingMessage) {
          // The upstream's cookies belong to the operator's session with it, not to the client.
          delete proxyRes.headers['set-cookie'];
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

/**
 * Run the proxy as a middleware step (it answers the request itself).
 * @param endpoint The allow-listed endpoint from `proxiedEndpoint`: the path the upstream is asked for.
 */
export function forward(u: Upstream, endpoint: string, req: Request, res: Response, next: NextFunction): void {
  (req as unknown as Record<symbol, string>)[ENDPOINT] = endpoint;
  void u.proxy(req, res, next);
}
