/**
 * Operator residency controls, beside the vLLM runtime adapter API (plugin/routes/admin.ts)
 * and mounted with it (`allowRuntimeLoraUpdating`, admin key):
 *
 * - `POST /v1/pin_lora_adapter {lora_name, model?}`: load the adapter into a device slot (JIT,
 *   as a request would) and hold one pin on it until unpinned, so it is never evicted.
 *   Pinning a pinned adapter changes nothing. A pin that would leave no slot free of operator
 *   pins is a 409 `too_many_pins` (every other adapter would wait for a slot that never frees).
 *   → JSON `{object: "lora_adapter", ...}`.
 * - `POST /v1/unpin_lora_adapter {lora_name, model?}`: drop that pin (running requests keep
 *   theirs); 404 when the adapter is not pinned by an operator.
 * - `POST /v1/prefetch_lora_adapter {lora_name, model?}`: fill the disk and host tiers without
 *   taking a slot (the next request only uploads). 400 when the adapter files cannot be read.
 *
 * The pins are leases of the adapter provider (adapters/manager.ts `acquire`): the provider
 * stays the one source of truth for tiers, slots and pin counts. Unloading an adapter
 * (`/v1/unload_lora_adapter`) drops its operator pin first; `releaseAll()` drops them all
 * (router close).
 */
import type { NextFunction, Request, Response } from 'express';
import type { AdapterInfo, AdapterLease, AdapterProvider } from '../../adapters/types.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { InvalidRequestError, ModelNotFoundError, OpenLoraError } from '../errors.ts';
import type { RouteContext } from './context.ts';

/** Operator pins by base model and adapter name. */
export class OperatorPins {
  private readonly leases = new Map<string, AdapterLease>();

  private static key(base: string, name: string): string {
    return `${base}\u0000${name}`;
  }

  /** Whether an operator pinned `base:name`. */
  has(base: string, name: string): boolean {
    return this.leases.has(OperatorPins.key(base, name));
  }

  /**
   * Pin (acquire and keep an operator lease); a second pin of the same adapter is a no-op. Throws
   * as `acquire`: `too_many_pins` (409) when it would leave no slot free of operator pins.
   */
  async pin(base: string, provider: AdapterProvider, name: string): Promise<void> {
    const k = OperatorPins.key(base, name);
    if (this.leases.has(k)) return;
    const lease = await provider.acquire(name, { operator: true });
    if (this.leases.has(k)) lease.release(); // a concurrent pin won
    else this.leases.set(k, lease);
  }

  /** Drop the operator pin of `base:name`; false when there is none. */
  unpin(base: string, name: string): boolean {
    const k = OperatorPins.key(base, name);
    const lease = this.leases.get(k);
    if (!lease) return false;
    this.leases.delete(k);
    lease.release();
    return true;
  }

  /** Drop every operator pin. */
  releaseAll(): void {
    for (const l of this.leases.values()) l.release();
    this.leases.clear();
  }
}

const bodyOf = (req: Request): Record<string, unknown> =>
  req.body !== null && typeof req.body === 'object' && !Array.isArray(req.body) ? (req.body as Record<string, unknown>) : {};

/** The base model (`model`, default the first) and the adapter `lora_name` of a request body. */
async function target(ctx: RouteContext, req: Request): Promise<{ base: string; provider: AdapterProvider; name: string }> {
  const body = bodyOf(req);
  const name = body.lora_name;
  if (typeof name !== 'string' || !name) throw new InvalidRequestError("'lora_name' must name an adapter.", 'lora_name');
  const want = body.model;
  if (want !== undefined && typeof want !== 'string') throw new InvalidRequestError("'model' must be a string naming a base model", 'model');
  const registry = await ctx.registry();
  const m = want === undefined ? registry.list()[0] : registry.list().find((x) => x.name === want);
  if (!m) throw new ModelNotFoundError(String(want));
  if (!m.adapters.get(name)) {
    throw new OpenLoraError(404, `The lora adapter '${name}' cannot be found.`, 'invalid_request_error', 'lora_name', 'model_not_found');
  }
  return { base: m.name, provider: m.adapters, name };
}

function adapterObject(base: string, a: AdapterInfo | undefined, pinned: boolean) {
  return { object: 'lora_adapter', model: base, lora_name: a?.name, tier: a?.tier ?? 'disk', slot: a?.slot ?? null, pins: a?.pins ?? 0, operator_pinned: pinned };
}

/** `POST /v1/pin_lora_adapter`. */
export function pinLoraAdapter(ctx: RouteContext, pins: OperatorPins) {
  return async function pinLoraAdapterHandler(req: Request, res: Response): Promise<void> {
    const { base, provider, name } = await target(ctx, req);
    await pins.pin(base, provider, name);
    ctx.logger.info({ model: base, adapter: name }, 'adapter pinned by operator');
    res.json(adapterObject(base, provider.get(name), true));
  };
}

/** `POST /v1/unpin_lora_adapter`. */
export function unpinLoraAdapter(ctx: RouteContext, pins: OperatorPins) {
  return async function unpinLoraAdapterHandler(req: Request, res: Response): Promise<void> {
    const { base, provider, name } = await target(ctx, req);
    if (!pins.unpin(base, name)) {
      throw new OpenLoraError(404, `The lora adapter '${name}' is not pinned.`, 'invalid_request_error', 'lora_name', 'not_pinned');
    }
    ctx.logger.info({ model: base, adapter: name }, 'adapter unpinned by operator');
    res.json(adapterObject(base, provider.get(name), false));
  };
}

/** `POST /v1/prefetch_lora_adapter`. */
export function prefetchLoraAdapter(ctx: RouteContext, pins: OperatorPins) {
  return async function prefetchLoraAdapterHandler(req: Request, res: Response): Promise<void> {
    const { base, provider, name } = await target(ctx, req);
    if (typeof provider.prefetch !== 'function') {
      throw new OpenLoraError(501, `base model ${base} does not support adapter prefetch`, 'invalid_request_error', 'model', 'not_implemented');
    }
    await provider.prefetch(name);
    const info = provider.get(name);
    if (info && info.tier !== 'host' && info.tier !== 'device') {
      throw new AdapterError(`adapter ${name}: its files could not be read into host memory (the server log has the reason).`, 'invalid_adapter', { param: 'lora_name' });
    }
    res.json(adapterObject(base, info, pins.has(base, name)));
  };
}

/** Middleware before `/v1/unload_lora_adapter`: drop the adapter's operator pin so its slot can be freed. */
export function unpinBeforeUnload(ctx: RouteContext, pins: OperatorPins) {
  return async function unpinBeforeUnloadHandler(req: Request, _res: Response, next: NextFunction): Promise<void> {
    const body = bodyOf(req);
    const registry = await ctx.registry();
    const base = typeof body.model === 'string' ? body.model : registry.list()[0]?.name;
    if (typeof body.lora_name === 'string' && base !== undefined) pins.unpin(base, body.lora_name);
    next();
  };
}
