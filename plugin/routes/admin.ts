/**
 * The runtime adapter API, vLLM-compatible (vllm/entrypoints/openai/serving_models.py):
 *
 * - `POST /v1/load_lora_adapter {lora_name, lora_path}` → 200 text
 *   `Success: LoRA adapter '<name>' added successfully.`; 400 when a field is missing, the
 *   name is taken, the path is outside the adapter roots or the adapter is invalid.
 * - `POST /v1/unload_lora_adapter {lora_name}` → 200 text
 *   `Success: LoRA adapter '<name>' removed successfully.`; 404 when unknown. Requests already
 *   running on it finish; new ones get 404.
 * - `POST /v1/rescan_lora_adapters` (openlora): rescan the adapter directories → JSON.
 *
 * Mounted only when `allowRuntimeLoraUpdating` is set. An optional body field `model` picks the
 * base model (default: the first served base). Errors are the usual OpenAI error bodies.
 */
import type { Request, Response } from 'express';
import type { AdapterProvider, RuntimeAdapterProvider } from '../../adapters/types.ts';
import { InvalidRequestError, ModelNotFoundError, OpenLoraError } from '../errors.ts';
import type { RouteContext } from './context.ts';

function isRuntime(p: AdapterProvider): p is RuntimeAdapterProvider {
  const r = p as Partial<RuntimeAdapterProvider>;
  return typeof r.loadRuntime === 'function' && typeof r.unregister === 'function' && typeof r.rescan === 'function';
}

async function providerFor(ctx: RouteContext, body: Record<string, unknown>): Promise<{ base: string; provider: RuntimeAdapterProvider }> {
  const registry = await ctx.registry();
  const want = body.model ?? body.base_model_name;
  if (want !== undefined && typeof want !== 'string') throw new InvalidRequestError("'model' must be a string naming a base model", 'model');
  const m = want === undefined ? registry.list()[0] : registry.list().find((x) => x.name === want);
  if (!m) throw new ModelNotFoundError(String(want));
  if (!isRuntime(m.adapters)) throw new OpenLoraError(501, `base model ${m.name} does not support runtime adapter loading`, 'invalid_request_error', 'model', 'not_implemented');
  return { base: m.name, provider: m.adapters };
}

const bodyOf = (req: Request): Record<string, unknown> =>
  req.body !== null && typeof req.body === 'object' && !Array.isArray(req.body) ? (req.body as Record<string, unknown>) : {};

/** `POST /v1/load_lora_adapter`. */
export function loadLoraAdapter(ctx: RouteContext) {
  return async function loadLoraAdapterHandler(req: Request, res: Response): Promise<void> {
    const body = bodyOf(req);
    const { lora_name: name, lora_path: path } = body;
    for (const [field, v] of [['lora_name', name], ['lora_path', path]] as const) {
      if (v !== undefined && v !== null && typeof v !== 'string') throw new InvalidRequestError(`'${field}' must be a string, got ${typeof v}.`, field);
    }
    if (typeof name !== 'string' || typeof path !== 'string' || !name || !path) {
      throw new InvalidRequestError("Both 'lora_name' and 'lora_path' must be provided.", typeof name === 'string' && name ? 'lora_path' : 'lora_name');
    }
    const { base, provider } = await providerFor(ctx, body);
    const info = await provider.loadRuntime(name, path);
    ctx.logger.info({ model: base, adapter: name, root: info.root }, 'runtime adapter loaded');
    res.status(200).type('text/plain').send(`Success: LoRA adapter '${name}' added successfully.`);
  };
}

/** `POST /v1/unload_lora_adapter`. */
export function unloadLoraAdapter(ctx: RouteContext) {
  return async function unloadLoraAdapterHandler(req: Request, res: Response): Promise<void> {
    const body = bodyOf(req);
    const name = body.lora_name;
    if (typeof name !== 'string' || !name) throw new InvalidRequestError("'lora_name' needs to be provided to unload a LoRA adapter.", 'lora_name');
    const { base, provider } = await providerFor(ctx, body);
    // A materialised merge (synthetic) is the merge cache's to retire, not a client's adapter.
    if (provider.get?.(name)?.synthetic || !provider.unregister(name)) {
      throw new OpenLoraError(404, `The lora adapter '${name}' cannot be found.`, 'invalid_request_error', 'lora_name', 'model_not_found');
    }
    ctx.logger.info({ model: base, adapter: name }, 'runtime adapter unloaded');
    res.status(200).type('text/plain').send(`Success: LoRA adapter '${name}' removed successfully.`);
  };
}

/** `POST /v1/rescan_lora_adapters` (openlora extension). */
export function rescanLoraAdapters(ctx: RouteContext) {
  return async function rescanLoraAdaptersHandler(req: Request, res: Response): Promise<void> {
    const { base, provider } = await providerFor(ctx, bodyOf(req));
    res.json({ object: 'rescan', model: base, ...(await provider.rescan()) });
  };
}
