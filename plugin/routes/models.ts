/**
 * `GET /v1/models` and `GET /v1/models/{id}`.
 *
 * Base models are `{id, object: "model", created, owned_by: "openlora"}`; adapters have id
 * `BASE:ADAPTER`, `parent: BASE` and `root` = the adapter folder (as vLLM lists LoRAs). Both
 * carry an `openlora` extension object (context length, architecture, backend / rank, alpha,
 * targets); the list carries `openlora.supported_architectures`.
 */
import type { Request, Response } from 'express';
import type { CompositionConfig } from '../../adapters/composition.ts';
import type { AdapterInfo } from '../../adapters/types.ts';
import type { ServedModel } from '../registry.ts';
import { accessOf, mayUseAdapter, mayUseModel } from '../auth.ts';
import { resolveRequest } from '../resolve.ts';
import type { RouteContext } from './context.ts';

/** The OpenAI model object of a base model. */
export function baseModelObject(m: ServedModel) {
  return {
    id: m.name,
    object: 'model' as const,
    created: m.created,
    owned_by: 'openlora',
    root: m.name,
    parent: null,
    max_model_len: m.info.maxModelLen,
    openlora: {
      kind: 'base',
      model_type: m.info.modelType,
      architecture: m.info.architecture,
      max_model_len: m.info.maxModelLen,
      vocab_size: m.info.vocabSize,
      dtype: m.info.dtype,
      quantization: m.info.quantization,
      backend: m.info.backend,
      max_loras: m.info.maxLoras,
      max_lora_rank: m.info.maxLoraRank,
      adapter_stats: m.adapters.stats?.(),
    },
  };
}

/** The OpenAI model object of an adapter of `m`. */
export function adapterModelObject(m: ServedModel, a: AdapterInfo) {
  return {
    id: `${m.name}:${a.name}`,
    object: 'model' as const,
    created: a.created,
    owned_by: 'openlora',
    root: a.root ?? a.dir,
    parent: m.name,
    max_model_len: m.info.maxModelLen,
    openlora: {
      kind: 'adapter',
      base: m.name,
      adapter: a.name,
      rank: a.rank,
      alpha: a.alpha,
      use_rslora: a.useRslora,
      target_modules: a.targetModules,
      source: a.source ?? 'local',
      tier: a.tier ?? 'disk',
    },
  };
}

/** The OpenAI model object of a composition (named in the config, or `BASE:A@w+B@w`). */
export function compositionModelObject(m: ServedModel, id: string, c: Pick<CompositionConfig, 'adapters' | 'merge'>) {
  return {
    id,
    object: 'model' as const,
    created: m.created,
    owned_by: 'openlora',
    root: id,
    parent: m.name,
    max_model_len: m.info.maxModelLen,
    openlora: {
      kind: 'composition',
      base: m.name,
      adapters: c.adapters.map((a) => ({ name: a.name, weight: a.weight })),
      merge: c.merge,
    },
  };
}

/** `GET /v1/models`. */
export function listModels(ctx: RouteContext) {
  return async function listModelsHandler(req: Request, res: Response): Promise<void> {
    const registry = await ctx.registry();
    const access = accessOf(req);
    const data = registry.list().flatMap((m) => [
      ...(mayUseModel(access, m.name) ? [baseModelObject(m)] : []),
      ...m.adapters
        .list()
        .filter((a) => !a.synthetic && mayUseAdapter(access, m.name, a.name))
        .map((a) => adapterModelObject(m, a)),
      ...[...registry.compositions]
        .filter(([, c]) => c.base === m.name && c.adapters.every((a) => mayUseAdapter(access, m.name, a.name)))
        .map(([name, c]) => compositionModelObject(m, name, c)),
    ]);
    // Extension: what a model folder may hold (config.json architectures[0]) to be served here.
    const supported = [...new Set(registry.list().flatMap((m) => m.info.supportedArchitectures))];
    res.json({ object: 'list', data, openlora: { supported_architectures: supported } });
  };
}

/** `GET /v1/models/{id}`: any accepted model string (alias included); 404 when unknown. */
export function retrieveModel(ctx: RouteContext) {
  return async function retrieveModelHandler(req: Request, res: Response): Promise<void> {
    const registry = await ctx.registry();
    const raw = (req.params as Record<string, string | string[]>).id ?? '';
    const id = Array.isArray(raw) ? raw.join('/') : raw;
    const { model, composition } = resolveRequest(req, res, registry, id);
    if (composition === undefined) {
      res.json(baseModelObject(model));
      return;
    }
    const single = composition.members.length === 1 && composition.merge.strategy === 'cat' && !registry.compositions.has(id);
    if (single) res.json(adapterModelObject(model, model.adapters.get(composition.members[0]!.name)!));
    else res.json(compositionModelObject(model, id, { adapters: composition.members, merge: composition.merge }));
  };
}
