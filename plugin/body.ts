/**
 * The JSON body parser's `verify` hook: refuse bodies that are not valid UTF-8 (RFC 8259 §8.1
 * requires it; the default decoder would silently turn bad bytes into U+FFFD) or that declare
 * another charset (body-parser would decode `charset=utf-16` bytes as UTF-16 and report the
 * garbage as a parse error), or that hold more arrays / objects than MAX_BODY_CONTAINERS or nest
 * them deeper than MAX_BODY_DEPTH (JSON.parse takes 2-4 s over a 16 MB body of brackets on one
 * core, blocking every stream meanwhile; the byte scan refuses it in milliseconds), and keep the
 * raw bytes when an upstream proxy may need to forward them unchanged.
 */
import type { IncomingMessage } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { InvalidRequestError } from './errors.ts';
import { keepRawBody } from './upstream.ts';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Most levels of arrays / objects a request body may nest (the body itself is level 1). Far above
 * what any request needs: a JSON schema inside one may nest MAX_JSON_DEPTH (128) levels.
 */
export const MAX_BODY_DEPTH = 512;
/**
 * Most arrays / objects a request body may hold: thousands of messages with content parts, or
 * batches of token-id prompts, hold far fewer; JSON.parse takes ~20 ms over this many.
 */
export const MAX_BODY_CONTAINERS = 200_000;

/**
 * Why the JSON text in `buf` is refused before it is parsed: more than `maxDepth` arrays /
 * objects open at once, or more than `maxContainers` of them (brackets inside strings do not
 * count); null when neither. A byte scan that stops at the first excess; it does not validate the
 * JSON (the parser does, after it).
 */
export function containerProblem(buf: Uint8Array, maxDepth = MAX_BODY_DEPTH, maxContainers = MAX_BODY_CONTAINERS): string | null {
  let depth = 0;
  let containers = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i]!;
    if (inString) {
      if (c === 0x5c) i++;  // backslash: the next byte is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `The request body nests arrays or objects more than ${maxDepth} levels deep.`;
      if (++containers > maxContainers) return `The request body holds more than ${maxContainers} arrays or objects.`;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return null;
}

/**
 * Build the `verify` option of `express.json`.
 * @param keepRaw Also keep the raw body (for upstream passthrough).
 * @returns a hook that throws a 400 error (`type: "entity.verify.failed"`) for invalid UTF-8 or a
 *   containerProblem, and
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
    const problem = containerProblem(buf);
    if (problem) throw Object.assign(new Error(problem), { status: 400, type: 'entity.verify.failed' });
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
