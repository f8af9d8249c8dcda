/**
 * The models this router serves: per base model its engine (native/engine.ts), tokenizer and
 * adapter provider, plus the named compositions of the config. Which of them serves a request
 * is decided in plugin/resolve.ts.
 */
import { reasoningEnabled, type ReasoningParserSetting } from './reasoning.ts';
import { createHash } from 'node:crypto';
import type { CompositionConfig } from '../adapters/composition.ts';
import type { AdapterProvider } from '../adapters/types.ts';
import type { Engine } from '../native/engine.ts';
import type { ModelInfo } from '../native/types.ts';
import { silentLogger, type LoggerLike } from './logger.ts';
import type { ModelTokenizer } from './tokenizer.ts';
import type { ToolFormatName } from './tools/format.ts';

/** One served base model, ready to take requests. */
export interface ServedModel {
  name: string;
  info: ModelInfo;
  tokenizer: ModelTokenizer;
  adapters: AdapterProvider;
  /** The engine: generates sequences and routes each one's events to the request that owns it. */
  engine: Engine;
  /** Unix seconds when the router started serving it. */
  created: number;
  /** OpenAI `system_fingerprint`: changes when the model or backend changes. */
  fingerprint: string;
  /** Configured tool-call format (overrides detection from the chat template; plugin/tools/format.ts). */
  toolCallFormat?: ToolFormatName;
  /** Whether outputs are split into reasoning and answer (plugin/reasoning.ts `reasoningEnabled`). */
  reasoning: boolean;
}

/** What the registry is built from (tokenizers already loaded). */
export interface ServedModelInit {
  name: string;
  engine: Engine;
  tokenizer: ModelTokenizer;
  adapters: AdapterProvider;
  toolCallFormat?: ToolFormatName;
  reasoningParser?: ReasoningParserSetting;
}

/** Name → served model, and the named compositions over them. */
export class ModelRegistry {
  private readonly models = new Map<string, ServedModel>();
  /** Base name → its adapter provider (what the model-name parser looks names up in). */
  readonly providers = new Map<string, AdapterProvider>();
  /** Named compositions from the config (name → base, adapters, merge). */
  readonly compositions: ReadonlyMap<string, CompositionConfig>;

  /**
   * @param inits The base models, in configuration order.
   * @param logger Where sequence event handler errors are logged.
   * @param compositions Named compositions (config `compositions`).
   * @throws Error for a duplicate model name, a tokenizer whose ids do not fit the model's vocab_size
   *   (ModelTokenizer.vocabMismatch), or a composition naming an unknown base or adapter.
   */
  constructor(inits: ServedModelInit[], logger: LoggerLike = silentLogger, compositions: Record<string, CompositionConfig> = {}) {
    this.compositions = new Map(Object.entries(compositions));
    const now = Math.floor(Date.now() / 1000);
    for (const m of inits) {
      if (this.models.has(m.name)) throw new Error(`duplicate model name "${m.name}"`);
      const info = m.engine.info();
      const mismatch = m.tokenizer.vocabMismatch(info.vocabSize);
      if (mismatch) {
        throw new Error(
          `model "${m.name}": the tokenizer (tokenizer.json) does not fit the weights: ${mismatch}, but the model's vocab_size (config.json) is ${info.vocabSize}`,
        );
      }
      const fp = createHash('sha256').update(`${m.name}|${info.modelType}|${info.dtype}|${info.backend}`).digest('hex');
      m.engine.onHandlerError((err, seqId) => logger.error({ err, seqId }, 'sequence event handler threw'));
      this.models.set(m.name, {
        name: m.name,
        info,
        tokenizer: m.tokenizer,
        adapters: m.adapters,
        engine: m.engine,
        created: now,
        fingerprint: `fp_${fp.slice(0, 10)}`,
        toolCallFormat: m.toolCallFormat,
        reasoning: reasoningEnabled(m.reasoningParser, m.tokenizer.chatTemplate),
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

  /** The base model named `name`, or undefined. */
  get(name: string): ServedModel | undefined {
    return this.models.get(name);
  }
}
