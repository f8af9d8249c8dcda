/**
 * The one place a request's target is decided: `model` string + body extensions + API key →
 * `{model: ServedModel, composition}` (which base model serves it, and which adapters, weighted
 * and combined how).
 *
 * Two stages, both here:
 * 1. `parseModelName`: the `model` string alone → a `ModelSpec` (DESIGN.md "Model names"):
 *    - `BASE`: the base model alone;
 *    - `BASE:ADAPTER`: one adapter of that base;
 *    - `ADAPTER`: an alias, when exactly one base has an adapter of that name;
 *    - `BASE:A@0.6+B@0.4`: the `cat` composition (exact weighted sum of the adapters' deltas);
 *    - a named composition from the config (`compositions`), by its name alone.
 *    Base names may themselves contain `:` (the longest matching base wins).
 * 2. `resolveComposition`: the spec + the body's `adapters`/`merge` → the `Composition`.
 *
 * `resolveRequest` runs both for one HTTP request under its key. The upstream dispatch
 * (plugin/index.ts) runs only stage 1 to decide "served here or proxied" (`servesModel`); the
 * spec it parsed is kept on the response, so the route does not parse the name again.
 */
import type { Request, Response } from 'express';
import {
  MergeOptionsSchema,
  ON_THE_FLY_STRATEGIES,
  slotShortfall,
  type AdapterWeight,
  type Composition,
  type CompositionConfig,
  type MergeOptions,
} from '../adapters/composition.ts';
import type { AdapterProvider } from '../adapters/types.ts';
import { accessOf, mayUseAdapter, mayUseModel } from './auth.ts';
import { InvalidRequestError, ModelNotFoundError } from './errors.ts';
import type { ModelRegistry, ServedModel } from './registry.ts';
import { setMetricModel } from './request-context.ts';
import { MAX_COMPOSITION_MEMBERS } from './schemas/common.ts';

/** Largest |weight| of one adapter in a composition. */
export const MAX_ADAPTER_WEIGHT = 1000;

/** A parsed model string. */
export interface ModelSpec {
  /** Base model name. */
  base: string;
  /** Adapter name, absent for the base model alone or a composition. */
  adapter?: string;
  /** `A@w+B@w` members (strategy cat), when the name is a composition. */
  members?: AdapterWeight[];
  /** The named composition the string refers to. */
  composition?: { name: string; config: CompositionConfig };
}

/** The body extension fields (already shape-checked by the request schema). */
export interface CompositionBody {
  adapters?: AdapterWeight[] | null;
  merge?: Partial<MergeOptions> | null;
}

/** A resolved request target: the base model plus, optionally, the adapter composition. */
export interface ResolvedModel {
  model: ServedModel;
  /** Undefined for the base model alone; a single adapter is one member with weight 1, strategy cat. */
  composition?: Composition;
}

/** Parse `A@0.6+B@0.4` (a bare `A` has weight 1); undefined when `s` is a plain adapter name. */
export function parseMerge(s: string): AdapterWeight[] | undefined {
  if (!s.includes('+') && !s.includes('@')) return undefined;
  const parts = s.split('+');
  if (parts.length > MAX_COMPOSITION_MEMBERS) {
    throw new InvalidRequestError(`Invalid model composition: ${parts.length} adapters; a composition names at most ${MAX_COMPOSITION_MEMBERS}.`, 'model');
  }
  return parts.map((part) => {
    const at = part.lastIndexOf('@');
    const name = at < 0 ? part : part.slice(0, at);
    // Decimal numbers only (Number() would also take "0x10", "0b1", " 1 ").
    const text = at < 0 ? '1' : part.slice(at + 1);
    const decimal = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text);
    const w = decimal ? Number(text) : NaN;
    if (name && decimal && !Number.isFinite(w)) {
      throw new InvalidRequestError(`Invalid model composition \`${s}\`: the weight of \`${name}\` (${text}) is too large to represent.`, 'model');
    }
    if (!name || !Number.isFinite(w) || (at >= 0 && part.slice(at + 1).trim() === '')) {
      throw new InvalidRequestError(
        `Invalid model composition \`${s}\`: expected ADAPTER[@WEIGHT] terms joined by "+" (a bare ADAPTER has weight 1), e.g. "shout@0.6+whisper@0.4".`,
        'model',
      );
    }
    return { name, weight: w };
  });
}

/**
 * Whether `provider` serves adapter `name` to clients: registered and not a materialised merge
 * (`merge-<hash>`, synthetic: reached only through its composition, never named directly).
 */
function serves(provider: AdapterProvider, name: string): boolean {
  const a = provider.get(name);
  return a !== undefined && !a.synthetic;
}

/**
 * The error for an adapter `name` that `provider` does not serve: the scan's refusal (400 with
 * the reason: DoRA, modules_to_save, bad JSON, ...) when it found and refused the folder, else
 * a 404.
 */
function missingAdapter(provider: AdapterProvider, model: string, name: string, detail: string, param = 'model'): Error {
  return provider.refusal?.(name) ?? new ModelNotFoundError(model, detail, param);
}

/**
 * Stage 1: resolve `model` against the served bases (name → adapter provider) and the named
 * compositions.
 * @throws ModelNotFoundError (404, param `model`) for unknown names; for an unknown adapter of a
 *   known base the message names the adapter; an adapter a scan refused answers its reason
 *   (AdapterError `invalid_adapter`, 400) instead. InvalidRequestError (400, code `model_ambiguous`)
 *   for an alias found under several bases, (400) for a malformed `A@w+B@w`.
 */
export function parseModelName(
  model: string,
  bases: ReadonlyMap<string, AdapterProvider>,
  compositions: ReadonlyMap<string, CompositionConfig> = new Map(),
): ModelSpec {
  if (bases.has(model)) return { base: model };
  const named = compositions.get(model);
  if (named) return { base: named.base, composition: { name: model, config: named } };

  // BASE:REST, longest base first (base names may contain ':').
  const candidates = [...bases.keys()].filter((b) => model.startsWith(b + ':')).sort((a, b) => b.length - a.length);
  const base = candidates[0];
  if (base !== undefined) {
    const rest = model.slice(base.length + 1);
    const provider = bases.get(base)!;
    const members = parseMerge(rest);
    if (members) {
      for (const m of members) {
        if (!serves(provider, m.name)) throw missingAdapter(provider, model, m.name, `Base model \`${base}\` has no adapter \`${m.name}\`.`);
      }
      return { base, members };
    }
    if (!serves(provider, rest)) throw missingAdapter(provider, model, rest, `Base model \`${base}\` has no adapter \`${rest}\`.`);
    return { base, adapter: rest };
  }

  // ADAPTER alias.
  const owners = [...bases].filter(([, p]) => serves(p, model)).map(([b]) => b);
  if (owners.length === 1) return { base: owners[0]!, adapter: model };
  if (owners.length > 1) {
    throw new InvalidRequestError(
      `The adapter name \`${model}\` exists for several base models (${owners.join(', ')}); use \`BASE:${model}\`.`,
      'model',
      'model_ambiguous',
    );
  }
  const refusals = [...bases.values()].map((p) => p.refusal?.(model)).filter((e) => e !== undefined);
  if (refusals.length === 1) throw refusals[0];
  throw new ModelNotFoundError(model);
}

/** Members of one base named as `ADAPTER` or `BASE:ADAPTER`; other bases are refused. */
function bodyMembers(base: string, members: AdapterWeight[], provider: AdapterProvider): AdapterWeight[] {
  return members.map((m, i) => {
    let name = m.name;
    if (name.startsWith(base + ':')) name = name.slice(base.length + 1);
    else if (name.includes(':') && !/^[a-z][a-z0-9+.-]*:\/\//i.test(name)) {
      // (A URL is not `BASE:ADAPTER`: it falls through to the 404 of an adapter this base lacks.)
      throw new InvalidRequestError(
        `adapters[${i}].name \`${m.name}\` belongs to another base model; every adapter of a composition must be an adapter of \`${base}\`.`,
        `adapters[${i}].name`,
      );
    }
    if (!serves(provider, name)) throw missingAdapter(provider, `${base}:${name}`, name, `Base model \`${base}\` has no adapter \`${name}\` (adapters[${i}]).`, `adapters[${i}].name`);
    return { name, weight: m.weight };
  });
}

/**
 * Stage 2: the composition a request asks for, or undefined for the base model alone.
 * - `BASE:ADAPTER` → one member, weight 1, strategy `cat` (a plain adapter);
 * - `BASE:A@0.6+B@0.4` → those members, strategy `cat` unless `merge.strategy` says otherwise;
 * - body `adapters: [{name, weight}]` with `model: BASE` → those members (`merge` as given);
 * - a named composition from the config → its members and merge options.
 * @throws InvalidRequestError (400) naming `adapters`/`merge` when the fields conflict with
 *   the model string or a weight is beyond ±MAX_ADAPTER_WEIGHT, (400 `too_many_adapters`) when a
 *   per-step composition names more distinct adapters than `maxLoras` slots; ModelNotFoundError
 *   (404) for unknown member adapters.
 */
export function resolveComposition(spec: ModelSpec, body: CompositionBody, provider: AdapterProvider, maxLoras = Infinity): Composition | undefined {
  const hasBodyAdapters = body.adapters != null;
  let composition: Composition | undefined;
  if (spec.composition) {
    if (hasBodyAdapters || body.merge != null) {
      throw new InvalidRequestError(
        `\`${spec.composition.name}\` is a named composition; it takes no \`adapters\` or \`merge\` fields.`,
        hasBodyAdapters ? 'adapters' : 'merge',
      );
    }
    const c = spec.composition.config;
    composition = { members: bodyMembers(spec.base, c.adapters, provider), merge: c.merge };
  } else {
    let members: AdapterWeight[] | undefined = spec.members ?? (spec.adapter ? [{ name: spec.adapter, weight: 1 }] : undefined);
    if (hasBodyAdapters) {
      if (members) {
        throw new InvalidRequestError(
          'Name the adapters either in `model` or in the `adapters` field, not both; with `adapters`, set `model` to the base model.',
          'adapters',
        );
      }
      members = bodyMembers(spec.base, body.adapters!, provider);
    }
    if (!members) {
      if (body.merge != null) throw new InvalidRequestError('`merge` needs adapters: name them in `model` (A@0.5+B@0.5) or in `adapters`.', 'merge');
      return undefined;
    }
    const merge = MergeOptionsSchema.parse(body.merge ?? {});
    if (merge.strategy === 'ensemble' && members.length < 2) {
      throw new InvalidRequestError('An ensemble needs at least two adapters.', 'adapters');
    }
    if (merge.strategy === 'ensemble' && members.some((m) => !(m.weight > 0))) {
      throw new InvalidRequestError('Ensemble weights must be greater than 0.', 'adapters');
    }
    composition = { members, merge };
  }
  composition.members.forEach((m, i) => {
    // The engine needs w * scaling finite; no sensible composition weighs an adapter beyond this.
    if (!(Math.abs(m.weight) <= MAX_ADAPTER_WEIGHT)) {
      throw new InvalidRequestError(
        `Adapter weight ${m.weight} for \`${m.name}\` is out of range; weights must be within ±${MAX_ADAPTER_WEIGHT}.`,
        hasBodyAdapters ? `adapters[${i}].weight` : 'model',
      );
    }
  });
  // Applied per step, a composition needs one slot per distinct adapter; more than the engine has
  // can never run: refuse it now, not after a wait (a materialised merge uses one slot).
  if (ON_THE_FLY_STRATEGIES.has(composition.merge.strategy)) {
    const tooMany = slotShortfall(new Set(composition.members.map((m) => m.name)).size, maxLoras);
    if (tooMany) throw new InvalidRequestError(tooMany, hasBodyAdapters ? 'adapters' : 'model', 'too_many_adapters');
  }
  return composition;
}

/** Both stages without a key (tests, tools): throws the 404/400 errors described above. */
export function resolveModel(registry: ModelRegistry, model: string, body: CompositionBody = {}): ResolvedModel {
  const spec = parseModelName(model, registry.providers, registry.compositions);
  const served = registry.get(spec.base)!;
  return { model: served, composition: resolveComposition(spec, body, served.adapters, served.info.maxLoras) };
}

/** Where the upstream dispatch leaves the spec it parsed for the route (one parse per request). */
const PARSED = Symbol('openlora.parsedModel');
type Parsed = { model: string; spec: ModelSpec };

/**
 * Whether `model` names a base, adapter or composition served here (stage 1 only; the body is
 * not validated yet). False only for an unknown name (a 404): a malformed or ambiguous name is
 * served here, so that its 400 comes from the route. The parsed spec is kept on `res`.
 */
export function servesModel(res: Response, registry: ModelRegistry, model: string): boolean {
  try {
    const spec = parseModelName(model, registry.providers, registry.compositions);
    (res.locals as Record<symbol, Parsed>)[PARSED] = { model, spec };
    return true;
  } catch (err) {
    return !(err instanceof ModelNotFoundError);
  }
}

/**
 * Resolve one request's target for its key, and label the request's metrics with the base.
 * Anything the key may not use answers exactly as an unknown model would (404, no detail), so
 * its existence is not leaked.
 * @throws ModelNotFoundError (404) / InvalidRequestError (400) as the two stages.
 */
export function resolveRequest(req: Request, res: Response, registry: ModelRegistry, model: string, body: CompositionBody = {}): ResolvedModel {
  const access = accessOf(req);
  const parsed = (res.locals as Record<symbol, Parsed | undefined>)[PARSED];
  let r: ResolvedModel;
  try {
    const spec = parsed?.model === model ? parsed.spec : parseModelName(model, registry.providers, registry.compositions);
    const served = registry.get(spec.base)!;
    r = { model: served, composition: resolveComposition(spec, body, served.adapters, served.info.maxLoras) };
  } catch (err) {
    if (access.key !== undefined && err instanceof ModelNotFoundError) throw new ModelNotFoundError(model);
    // an adapter a scan refused (AdapterProvider.refusal): its reason only for keys that may use it
    const refused = err as { base?: string; adapter?: string };
    if (refused.adapter !== undefined && !mayUseAdapter(access, refused.base!, refused.adapter)) throw new ModelNotFoundError(model);
    throw err;
  }
  if (access.key !== undefined) {
    const base = r.model.name;
    const members = r.composition?.members ?? [];
    const ok = members.length === 0 ? mayUseModel(access, base) : members.every((m) => mayUseAdapter(access, base, m.name));
    if (!ok) throw new ModelNotFoundError(model);
  }
  setMetricModel(res, r.model.name);
  return r;
}
