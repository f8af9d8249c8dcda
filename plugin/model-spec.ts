/**
 * The `model` string → which base model and which adapter serve the request.
 *
 * Accepted forms (DESIGN.md "Model names"):
 * - `BASE`: the base model alone;
 * - `BASE:ADAPTER`: one adapter of that base;
 * - `ADAPTER`: an alias, when exactly one base has an adapter of that name;
 * - `BASE:A@0.6+B@0.4`: the `cat` composition (exact weighted sum of the adapters' deltas);
 * - a named composition from the config (`compositions`), by its name alone.
 * Base names may themselves contain `:` (the longest matching base wins).
 */
import type { AdapterWeight, CompositionConfig } from '../adapters/composition.ts';
import type { AdapterProvider } from '../adapters/types.ts';
import { InvalidRequestError, ModelNotFoundError } from './errors.ts';

/** A resolved model string. */
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

/** One member of a `A@0.6+B@0.4` composition. */
export type MergeMember = AdapterWeight;

/** Parse `A@0.6+B@0.4` (a bare `A` has weight 1); undefined when `s` is a plain adapter name. */
export function parseMerge(s: string): MergeMember[] | undefined {
  if (!s.includes('+') && !s.includes('@')) return undefined;
  return s.split('+').map((part) => {
    const at = part.lastIndexOf('@');
    const name = at < 0 ? part : part.slice(0, at);
    // Decimal numbers only (Number() would also take "0x10", "0b1", " 1 ").
    const text = at < 0 ? '1' : part.slice(at + 1);
    const w = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : NaN;
    if (!name || !Number.isFinite(w) || (at >= 0 && part.slice(at + 1).trim() === '')) {
      throw new InvalidRequestError(
        `Invalid model composition \`${s}\`: expected ADAPTER@WEIGHT terms joined by "+", e.g. "shout@0.6+whisper@0.4".`,
        'model',
      );
    }
    return { name, weight: w };
  });
}

/**
 * Resolve `model` against the served bases (name → adapter provider).
 * Throws ModelNotFoundError (404, param `model`) for unknown names; for an unknown adapter of a
 * known base the message names the adapter. An alias found under several bases is a 400.
 */
export function resolveModelSpec(
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
        if (!provider.get(m.name)) {
          throw new ModelNotFoundError(model, `Base model \`${base}\` has no adapter \`${m.name}\`.`);
        }
      }
      return { base, members };
    }
    if (!provider.get(rest)) {
      throw new ModelNotFoundError(model, `Base model \`${base}\` has no adapter \`${rest}\`.`);
    }
    return { base, adapter: rest };
  }

  // ADAPTER alias.
  const owners = [...bases].filter(([, p]) => p.get(model) !== undefined).map(([b]) => b);
  if (owners.length === 1) return { base: owners[0]!, adapter: model };
  if (owners.length > 1) {
    throw new InvalidRequestError(
      `The adapter name \`${model}\` exists for several base models (${owners.join(', ')}); use \`BASE:${model}\`.`,
      'model',
      'model_ambiguous',
    );
  }
  throw new ModelNotFoundError(model);
}
