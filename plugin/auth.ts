/**
 * API keys: `Authorization: Bearer KEY`, per-key model and adapter globs, requests-per-minute
 * and concurrent-request limits, and the admin guard.
 *
 * Keys are kept only as sha256 digests (config `key` is hashed at start, `keyHash` is taken as
 * is) and compared with `crypto.timingSafeEqual` against every configured digest, with no early
 * exit. The key never reaches a log line, an error message or an upstream.
 *
 * With no keys configured every request is allowed (the open mode), admin routes included.
 *
 * @example
 * const ring = new KeyRing(config.keys);
 * router.use('/v1', authenticate(ring));
 * router.post('/v1/load_lora_adapter', requireAdmin, json, handler);
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { KeyConfig } from '../config/schema.ts';
import { AuthenticationError, PermissionError, RateLimitError } from './errors.ts';
import { GlobList } from './glob.ts';

/** One configured key's rights and limits (no secret in here but its digest). */
export class ApiKey {
  readonly name: string;
  readonly digest: Buffer;
  readonly models: GlobList;
  readonly adapters: GlobList;
  readonly rpm?: number;
  readonly maxConcurrentStreams?: number;
  readonly admin: boolean;
  /** Request start times (ms) inside the current minute, oldest first. */
  private readonly recent: number[] = [];
  /** Generation requests in flight. */
  streams = 0;

  constructor(k: KeyConfig) {
    this.name = k.name;
    this.digest = k.keyHash !== undefined ? Buffer.from(k.keyHash, 'hex') : sha256(k.key!);
    this.models = new GlobList(k.models);
    this.adapters = new GlobList(k.adapters);
    this.rpm = k.rpm;
    this.maxConcurrentStreams = k.maxConcurrentStreams;
    this.admin = k.admin;
  }

  /** Count one request against `rpm`; throws 429 with Retry-After when the minute is full. */
  hit(now = Date.now()): void {
    if (this.rpm === undefined) return;
    while (this.recent.length > 0 && this.recent[0]! <= now - 60_000) this.recent.shift();
    if (this.recent.length >= this.rpm) {
      const wait = Math.max(1, Math.ceil((this.recent[0]! + 60_000 - now) / 1000));
      throw new RateLimitError(`Rate limit reached for key ${this.name}: ${this.rpm} requests per minute. Retry in ${wait}s.`, wait);
    }
    this.recent.push(now);
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The configured keys of one router. */
export class KeyRing {
  readonly keys: ApiKey[];

  constructor(keys: readonly KeyConfig[] = []) {
    this.keys = keys.map((k) => new ApiKey(k));
  }

  /** No keys configured: every request is allowed. */
  get open(): boolean {
    return this.keys.length === 0;
  }

  /** The key whose digest equals sha256(token), comparing against every key in constant time. */
  lookup(token: string): ApiKey | undefined {
    const d = sha256(token);
    let found: ApiKey | undefined;
    for (const k of this.keys) {
      if (timingSafeEqual(d, k.digest) && found === undefined) found = k;
    }
    return found;
  }
}

/** What a request may do: `key` undefined means open mode (everything allowed). */
export interface Access {
  key?: ApiKey;
}

const ACCESS = Symbol('openlora.access');
const OPEN: Access = Object.freeze({});

/** The access `authenticate` attached to the request (open when it did not run: no keys). */
export function accessOf(req: Request): Access {
  return (req as unknown as Record<symbol, Access | undefined>)[ACCESS] ?? OPEN;
}

/**
 * Middleware: check `Authorization: Bearer KEY` (401 when missing or unknown), count the request
 * against the key's rpm (429), and attach the key's rights for the routes. In open mode it only
 * marks the request open.
 */
export function authenticate(ring: KeyRing) {
  return function openLoraAuthenticate(req: Request, _res: Response, next: NextFunction): void {
    const slot = req as unknown as Record<symbol, Access>;
    if (ring.open) {
      slot[ACCESS] = OPEN;
      return next();
    }
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (!m) {
      throw new AuthenticationError(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        'missing_api_key',
      );
    }
    const key = ring.lookup(m[1]!);
    if (!key) throw new AuthenticationError();
    key.hit();
    slot[ACCESS] = { key };
    next();
  };
}

/**
 * Middleware for admin routes (adapter load/unload): 403 unless the request's key has
 * `admin: true`. Open mode (no keys configured) lets everyone through. Mount it after the
 * router's `authenticate` (every `/v1/*` route of `openLora()` has it).
 */
export function requireAdmin(req: Request, _res: Response, next: NextFunction): void {
  const { key } = accessOf(req);
  if (key && !key.admin) throw new PermissionError('This route needs an admin API key.');
  next();
}

/** May the request use base model (or named composition, or upstream model) `name` alone? */
export function mayUseModel(access: Access, name: string): boolean {
  return access.key === undefined || access.key.models.test(name);
}

/** May the request use adapter `adapter` of `base`? Globs match `BASE:ADAPTER`. */
export function mayUseAdapter(access: Access, base: string, adapter: string): boolean {
  return access.key === undefined || access.key.adapters.test(`${base}:${adapter}`);
}

/** Hold one of the key's concurrent-request places (429 when all are taken); returns the release. */
export function holdStream(access: Access): () => void {
  const key = access.key;
  if (!key || key.maxConcurrentStreams === undefined) return () => {};
  if (key.streams >= key.maxConcurrentStreams) {
    throw new RateLimitError(`Too many concurrent requests for key ${key.name} (limit ${key.maxConcurrentStreams}).`, 1, 'concurrent_limit_exceeded');
  }
  key.streams++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    key.streams--;
  };
}
