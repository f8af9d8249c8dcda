/**
 * The models this router serves: per base model its engine, tokenizer and adapter provider.
 */
import { createHash } from 'node:crypto';
import type { AdapterProvider } from '../adapters/types.ts';
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

/** A resolved request target: the base model plus, optionally, one adapter name. */
export interface ResolvedModel {
  model: ServedModel;
  adapter?: string;
}

/** Name → served model, and the `model` string resolver over them. */
export class ModelRegistry {
  private readonly models = new Map<string, ServedModel>();
  private readonly providers = new Map<string, AdapterProvider>();

  constructor(inits: ServedModelInit[], logger?: LoggerLike) {
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
  }

  /** Every served base model, in configuration order. */
  list(): ServedModel[] {
    return [...this.models.values()];
  }

  /** Resolve a `model` string (see model-spec.ts); throws the 404/400 errors described there. */
  resolve(model: string): ResolvedModel {
    const spec: ModelSpec = resolveModelSpec(model, this.providers);
    return { model: this.models.get(spec.base)!, adapter: spec.adapter };
  }
}
