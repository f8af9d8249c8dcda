/**
 * The JSON body parser's `verify` hook: refuse bodies that are not valid UTF-8 (RFC 8259 §8.1
 * requires it; the default decoder would silently turn bad bytes into U+FFFD) or that declare
 * another charset (body-parser would decode `charset=utf-16` bytes as UTF-16 and report the
 * garbage as a parse error), and keep the raw bytes when an upstream proxy may need to forward
 * them unchanged.
 */
import type { IncomingMessage } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { InvalidRequestError } from './errors.ts';
import { keepRawBody } from './upstream.ts';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Build the `verify` option of `express.json`.
 * @param keepRaw Also keep the raw body (for upstream passthrough).
 * @returns a hook that throws a 400 error (`type: "entity.verify.failed"`) for invalid UTF-8, and
 *   a 415 (`type: "charset.unsupported"`) naming the charset for any charset but UTF-8.
 */
export function verifyJsonBody(keepRaw: boolean) {
  return function verifyBody(req: IncomingMessage, res: unknown, buf: Buffer, encoding: string): void {
    if (encoding.toLowerCase().replace('-', '') !== 'utf8') {
      throw Object.assign(new Error(`Unsupported charset "${encoding.toUpperCase()}" in the Content-Type header: JSON request bodies must be UTF-8 (RFC 8259 §8.1).`), {
        status: 415,
        type: 'charset.unsupported',
      });
    }
    try {
      strictUtf8.decode(buf);
    } catch {
      throw Object.assign(new Error('The request body is not valid UTF-8.'), { status: 400, type: 'entity.verify.failed' });
    }
    if (keepRaw) keepRawBody(req as Parameters<typeof keepRawBody>[0], res as Parameters<typeof keepRawBody>[1], buf);
  };
}

/**
 * Middleware after `express.json`: a request that carries a body the JSON parser did not read
 * (its Content-Type is not JSON, e.g. curl's `-d` default `application/x-www-form-urlencoded` or
 * `text/plain`) gets a 400 that names the header, instead of a schema error about a missing object.
 * Requests without a body pass (their handlers report the missing fields).
 * @throws nothing; passes InvalidRequestError (400, param null) to `next`.
 */
export function requireJsonBody(req: Request, _res: Response, next: NextFunction): void {
  const length = req.headers['content-length'];
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (req.body === undefined && hasBody) {
    const type = req.headers['content-type'];
    next(
      new InvalidRequestError(
        `Invalid request body: the Content-Type header must be application/json, but got ${type ? `'${type}'` : 'none'} instead.`,
      ),
    );
    return;
  }
  next();
}
