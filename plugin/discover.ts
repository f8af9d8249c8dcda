/**
 * Adapters found by name: before a request is resolved, the adapter names it gives (`model`'s
 * `BASE:NAME`, `NAME` or `BASE:A@0.6+B@0.4`, and the `adapters` extension's names) that a base
 * does not serve yet are looked up as folders in that base's scanned adapter directories
 * (AdapterProvider.discover). A folder copied there after start-up is then served on the first
 * request that names it, as vLLM's filesystem LoRA resolver does, instead of a 404 until a rescan.
 * Only names the request's API key may use are looked up; a lookup never fails the request (an
 * unknown name still gets its 404 from the route).
 */
import type { NextFunction, Request, Response } from 'express';
import { ADAPTER_NAME_RE } from '../adapters/registry.ts';
import { accessOf, mayUseAdapter } from './auth.ts';
import type { ModelRegistry } from './registry.ts';

/** Most adapter names of one request looked up (each costs a stat per scanned directory). */
export const MAX_DISCOVERED_NAMES = 16;

/**
 * The adapter names a request body gives, with the base they are asked of (undefined: any base).
 * `BASE:SPEC` where BASE is a served model's name; SPEC is `A` or `A@w+B@w...`.
 */
export function adapterNamesOf(body: unknown, isBase: (name: string) => boolean): Array<{ base?: string; name: string }> {
  const b = body as { model?: unknown; adapters?: unknown } | undefined;
  const out: Array<{ base?: string; name: string }> = [];
  const add = (base: string | undefined, name: string) => {
    if (out.length < MAX_DISCOVERED_NAMES && ADAPTER_NAME_RE.test(name) && !isBase(name) && !out.some((o) => o.base === base && o.name === name)) {
      out.push({ base, name });
    }
  };
  let base: string | undefined;
  if (typeof b?.model === 'string') {
    const colon = b.model.indexOf(':');
    base = colon > 0 && isBase(b.model.slice(0, colon)) ? b.model.slice(0, colon) : undefined;
    const spec = base !== undefined ? b.model.slice(colon + 1) : b.model;
    for (const part of spec.split('+', 4 * MAX_DISCOVERED_NAMES)) add(base, part.replace(/@[^@]*$/, ''));
  }
  if (Array.isArray(b?.adapters)) {
    for (const a of b.adapters.slice(0, 4 * MAX_DISCOVERED_NAMES)) if (typeof (a as { name?: unknown })?.name === 'string') add(base, (a as { name: string }).name);
  }
  return out;
}

/** Middleware (after authentication and the JSON parser): looks the request's unknown adapter names up. */
export function discoverAdapters(registry: () => Promise<ModelRegistry>) {
  return async function discover(req: Request, _res: Response, next: NextFunction): Promise<void> {
    try {
      const reg = await registry();
      const names = adapterNamesOf(req.body, (n) => reg.get(n) !== undefined);
      if (names.length === 0) return next();
      const access = accessOf(req);
      for (const { base, name } of names) {
        for (const m of base !== undefined ? [reg.get(base)!] : reg.list()) {
          const p = m.adapters;
          if (!p.discover || p.get(name) || !mayUseAdapter(access, m.name, name)) continue;
          if (await p.discover(name)) break;
        }
      }
    } catch {
      // a lookup never fails the request: the route answers for the name as it is
    }
    next();
  };
}
