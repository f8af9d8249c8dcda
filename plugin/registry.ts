/**
 * The models this router serves: per base model its engine, tokenizer and adapter provider.
 */
import { createHash } from 'node:crypto';
import type { Composition, CompositionConfig } from '../adapters/composition.ts';
import type { AdapterProvider } from '../adapters/types.ts';
import { resolveComposition, type CompositionBody } from './compose.ts';
import { InvalidRequestError } from './errors.ts';

/** Largest |weight| of one adapter in a composition. */
export const MAX_ADAPTER_WEIGHT = 1000;
import type { ModelInfo } from '../native/types.ts';
import { EngineHub, type EngineLike, type LoggerLike } from './engine-hub.ts';
import { resolveModelSpec, type ModelSpec } from './model-spec.ts';
import type { ModelTokenizer } from './tokenizer.ts';

/** One served base model, ready to take requests. */
export interface ServedModel {
  name: string;
  info: ModelInfo;
  tokenizer: ModelTokenizer;
  adapters: AdapterProvider;
  hub: EngineHub;
  /** Unix seconds when the router started serving it. */
  created: number;
  /** OpenAI `system_fingerprint`: changes when the model or backend changes. */
  fingerprint: string;
}

/** What the registry is built from (tokenizers already loaded). */
export interface ServedModelInit {
  name: string;
  engine: EngineLike;
  info: ModelInfo;
  tokenizer: ModelTokenizer;
  adapters: AdapterProvider;
}

/** A resolved request target: the base model plus, optionally, the adapter composition. */
export interface ResolvedModel {
  model: ServedModel;
  /** Undefined for the base model alone; a single adapter is one member with weight 1. */
  composition?: Composition;
}

/** Name → served model, and the `model` string resolver over them. */
export class ModelRegistry {
  private readonly models = new Map<string, ServedModel>();
  private readonly providers = new Map<string, AdapterProvider>();
  /** Named compositions from the config (name → base, adapters, merge). */
  readonly compositions: ReadonlyMap<string, CompositionConfig>;

  constructor(inits: ServedModelInit[], logger?: LoggerLike, compositions: Record<string, CompositionConfig> = {}) {
    this.compositions = new Map(Object.entries(compositions));
    const now = Math.floor(Date.now() / 1000);
    for (const m of inits) {
      if (this.models.has(m.name)) throw new Error(`duplicate model name "${m.name}"`);
      const fp = createHash('sha256').update(`${m.name}|${m.info.modelType}|${m.info.dtype}|${m.info.backend}`).digest('hex');
      this.models.set(m.name, {
        name: m.name,
        info: m.info,
        tokenizer: m.tokenizer,
        adapters: m.adapters,
        hub: new EngineHub(m.engine, logger),
        created: now,
        fingerprint: `fp_${fp.slice(0, 10)}`,
      });
      this.providers.set(m.name, m.adapters);
    }
    for (const [name, c] of this.compositions) {
      const provider = this.providers.get(c.base);
      if (!provider) throw new Error(`composition "${name}": unknown base model "${c.base}"`);
      if (this.models.has(name)) throw new Error(`composition "${name}" has the name of a base model`);
      c.adapters.forEach((a, i) => {
        if (!provider.get(a.name)) throw new Error(`composition "${name}": adapters.${i}: base "${c.base}" has no adapter "${a.name}"`);
      });
    }
  }

  /** Every served base model, in configuration order. */
  list(): ServedModel[] {
    return [...this.models.values()];
  }

  /**
   * Resolve a `model` string (see model-spec.ts) and the body extensions `adapters`/`merge`
   * (see compose.ts); throws the 404/400 errors described there.
   */
  resolve(model: string, body: CompositionBody = {}): ResolvedModel {
    const spec: ModelSpec = resolveModelSpec(model, this.providers, this.compositions);
    const served = this.models.get(spec.base)!;
    const composition = resolveComposition(spec, body, served.adapters);
    for (const m of composition?.members ?? []) {
      // The engine needs w * scaling finite; no sensible composition weighs an adapter beyond this.
      if (!(Math.abs(m.weight) <= MAX_ADAPTER_WEIGHT)) {
        throw new InvalidRequestError(
          `Adapter weight ${m.weight} for \`${m.name}\` is out of range; weights must be within ±${MAX_ADAPTER_WEIGHT}.`,
          body.adapters != null ? 'adapters' : 'model',
        );
      }
    }
    return { model: served, composition };
  }
}
