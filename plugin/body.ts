/**
 * The JSON body parser's `verify` hook: refuse bodies that are not valid UTF-8 (RFC 8259 §8.1
 * requires it; the default decoder would silently turn bad bytes into U+FFFD), and keep the raw
 * bytes when an upstream proxy may need to forward them unchanged.
 */
import type { IncomingMessage } from 'node:http';
import { keepRawBody } from './upstream.ts';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Build the `verify` option of `express.json`.
 * @param keepRaw Also keep the raw body (for upstream passthrough).
 * @returns a hook that throws a 400 error (`type: "entity.verify.failed"`) for invalid UTF-8.
 */
export function verifyJsonBody(keepRaw: boolean) {
  return function verifyBody(req: IncomingMessage, res: unknown, buf: Buffer, encoding: string): void {
    if (encoding.toLowerCase().replace('-', '') === 'utf8') {
      try {
        strictUtf8.decode(buf);
      } catch {
        throw Object.assign(new Error('The request body is not valid UTF-8.'), { status: 400, type: 'entity.verify.failed' });
      }
    }
    if (keepRaw) keepRawBody(req as Parameters<typeof keepRawBody>[0], res as Parameters<typeof keepRawBody>[1], buf);
  };
}
