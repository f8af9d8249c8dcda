/**
 * `Engine`: the typed TypeScript face of the native engine.
 *
 * It wraps one `NativeEngine` (native/types.ts), validates every request in TS before it
 * crosses into C++ (throwing `NativeError` `invalid_argument` from native/errors.ts, naming the field), and
 * fans the per-step event batches out to one listener per sequence.
 *
 * Usage:
 * ```ts
 * const engine = await Engine.load('examples/models/tiny-shakespeare', { threads: 2 });
 * const { seqId, done } = engine.generate({ ...params }, (ev) => process.stdout.write(String(ev.token)));
 * const result = await done;          // {tokens, finishReason, ...}; never rejects
 * await engine.dispose();
 * ```
 */
import { loadNativeAddon } from './binding.ts';
import { SequenceDispatcher } from './dispatch.ts';
import { NativeError } from './errors.ts';
import { checkTokenMask } from './token-mask.ts';
import type {
  AdapterLoadSpec,
  AdapterRef,
  EngineOptions,
  EngineStats,
  EnsembleMember,
  ForwardResult,
  ModelInfo,
  NativeEngine,
  SequenceEvent,
  SequenceParams,
  TokenLogprob,
} from './types.ts';

/** Everything one sequence produced, delivered when it finishes. */
export interface GenerationResult {
  seqId: number;
  /** Generated token ids, in order (a sampled stop token is included, as the last one). */
  tokens: number[];
  /** Logprob of each token (when params.logprobs >= 0). */
  logprobs: number[];
  /** Top alternatives per token (when params.logprobs > 0). */
  topLogprobs: TokenLogprob[][];
  /** "stop" | "length" | "cancelled" | "error". */
  finishReason: string;
  /** Error text when finishReason is "error". */
  error?: string;
  promptTokens: number;
  completionTokens: number;
}

/** A running generation. */
export interface GenerationHandle {
  seqId: number;
  /** Resolves when the sequence finishes, whatever the reason (it never rejects). */
  done: Promise<GenerationResult>;
  /** Cancel it; `done` then resolves with finishReason "cancelled". */
  cancel(): void;
  /** End it with finishReason "stop" and no further token (Engine.stop). */
  stop(): void;
  /** The next token's allowed-token mask of a constrained sequence (Engine.setTokenMask). */
  setTokenMask(mask: Int32Array): void;
}

/** A refused argument: `NativeError` with code `invalid_argument`; `param` is the field. */
const invalid = (message: string, param: string | null = null): NativeError => new NativeError(message, 'invalid_argument', param);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export class Engine {
  private readonly dispatcher: SequenceDispatcher;
  private readonly modelInfo: ModelInfo;
  /** Live constrained sequences: whether the mask of their next token is still owed (setTokenMask). */
  private readonly maskOwed = new Map<number, boolean>();
  private disposed = false;

  /** Load a Hugging Face model folder into a new engine. Rejects with the native message. */
  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    return new Engine(await loadNativeAddon().loadModel(dir, options));
  }

  constructor(private readonly native: NativeEngine) {
    this.modelInfo = native.info();
    // NOTE: a throwing listener surfaces as an uncaught exception (like a throwing
    // EventEmitter listener) after the other sequences of the step got their events.
    this.dispatcher = new SequenceDispatcher(native, (err) => queueMicrotask(() => { throw err; }));
  }

  /** Model and engine facts (shapes, backend and why). */
  info(): ModelInfo {
    return this.modelInfo;
  }

  /** Load an adapter into a free slot; resolves to the slot id. */
  loadAdapter(spec: AdapterLoadSpec): Promise<number> {
    return this.native.loadAdapter(spec);
  }

  /** Free a slot (throws if a live sequence still uses it). */
  unloadAdapter(slot: number): void {
    this.native.unloadAdapter(slot);
  }

  /** All-position logits [numTokens, vocab] for a prompt with an adapter set. */
  forward(promptIds: number[], adapters: AdapterRef[] = []): Promise<ForwardResult> {
    this.checkPrompt(promptIds, this.modelInfo.maxPositionEmbeddings + 1);
    this.checkAdapters(adapters);
    return this.native.forward(promptIds, adapters);
  }

  /**
   * Start generating. `onEvent` (optional) sees every event of this sequence as it arrives
   * (one per generated token; the last carries finishReason). Validates first:
   * @throws NativeError `invalid_argument` naming the offending SequenceParams field.
   */
  generate(params: SequenceParams, onEvent?: (event: SequenceEvent) => void): GenerationHandle {
    this.validate(params);
    let resolve!: (r: GenerationResult) => void;
    const done = new Promise<GenerationResult>((r) => (resolve = r));
    const result: GenerationResult = {
      seqId: -1,
      tokens: [],
      logprobs: [],
      topLogprobs: [],
      finishReason: '',
      promptTokens: params.promptIds.length,
      completionTokens: 0,
    };
    const seqId = this.dispatcher.add(params, (ev) => {
      if (ev.finishReason) this.maskOwed.delete(seqId);
      else if (ev.token >= 0 && this.maskOwed.has(seqId)) this.maskOwed.set(seqId, true);
      if (ev.token >= 0) {
        result.tokens.push(ev.token);
        if (ev.logprob !== undefined) result.logprobs.push(ev.logprob);
        if (ev.topLogprobs) result.topLogprobs.push(ev.topLogprobs);
      }
      if (ev.finishReason) {
        result.finishReason = ev.finishReason;
        if (ev.error) result.error = ev.error;
        result.promptTokens = ev.promptTokens ?? result.promptTokens;
        result.completionTokens = ev.completionTokens ?? result.tokens.length;
      }
      try {
        onEvent?.(ev);
      } finally {
        if (ev.finishReason) resolve(result);
      }
    });
    result.seqId = seqId;
    if (params.constrained) this.maskOwed.set(seqId, params.tokenMask === undefined);
    return {
      seqId,
      done,
      cancel: () => this.native.cancel(seqId),
      stop: () => this.stop(seqId),
      setTokenMask: (mask) => this.setTokenMask(seqId, mask),
    };
  }

  /** Cancel a sequence by id (unknown ids are ignored). */
  cancel(seqId: number): void {
    this.native.cancel(seqId);
  }

  /** End a sequence with finishReason "stop" and no further token (its grammar terminated). Unknown ids are ignored. */
  stop(seqId: number): void {
    this.native.stop(seqId);
  }

  /**
   * The allowed-token mask of the next token of a constrained sequence (SequenceParams.constrained):
   * one per token, sent after the previous token's event (native/README.md "Constrained decoding").
   * Ids this Engine does not know as live constrained sequences go to the engine, which ignores
   * finished ones and finishes an unconstrained one "error".
   * @throws NativeError `invalid_argument` (param `tokenMask`) for a wrong type or length or a mask
   *   allowing nothing, or when the sequence's next token already has its mask.
   */
  setTokenMask(seqId: number, mask: Int32Array): void {
    checkTokenMask(mask, this.modelInfo.vocabSize);
    if (this.maskOwed.get(seqId) === false) {
      throw invalid(
        `setTokenMask: sequence ${seqId} already has the mask of its next token; send one mask per token, after that token's predecessor's event`,
        'tokenMask',
      );
    }
    if (this.maskOwed.has(seqId)) this.maskOwed.set(seqId, false);
    this.native.setTokenMask(seqId, mask);
  }

  /** Running/waiting sequences, loaded slots, steps so far, KV blocks, prefix hits, preemptions. */
  stats(): EngineStats {
    return this.native.stats();
  }

  /** Stop the engine; pending generations finish "cancelled". Idempotent. */
  async dispose(): Promise<void> {
    this.disposed = true;
    await this.native.dispose();
  }

  private checkPrompt(ids: unknown, maxLen: number): void {
    const vocab = this.modelInfo.vocabSize;
    if (!Array.isArray(ids) || ids.length === 0) throw invalid('promptIds must be a non-empty array of token ids', 'promptIds');
    ids.forEach((t, i) => {
      if (!isInt(t) || t < 0 || t >= vocab) {
        throw invalid(`promptIds[${i}] = ${String(t)} is not a token id in [0, ${vocab})`, 'promptIds');
      }
    });
    if (ids.length >= maxLen) {
      throw invalid(
        `The prompt has ${ids.length} tokens; the model's context is ${this.modelInfo.maxPositionEmbeddings} tokens, which leaves no room to generate`,
        'promptIds',
      );
    }
  }

  /** @param field where the adapter set sits ("adapters" or "ensemble[i].adapters"), for messages. */
  private checkAdapters(adapters: unknown, field = 'adapters', param = 'adapters'): void {
    if (!Array.isArray(adapters)) throw invalid(`${field} must be an array of {slot, weight}`, param);
    adapters.forEach((a: AdapterRef, i) => {
      if (!isInt(a?.slot) || a.slot < 0 || a.slot >= this.modelInfo.maxLoras) {
        throw invalid(`${field}[${i}].slot must be an integer in [0, ${this.modelInfo.maxLoras})`, param);
      }
      if (!isFiniteNumber(a.weight)) throw invalid(`${field}[${i}].weight must be a finite number`, param);
    });
  }

  /** SequenceParams.ensemble: 2..16 members, weights finite and > 0, valid adapter sets, no top-level adapters. */
  private checkEnsemble(p: SequenceParams): void {
    const members: unknown = p.ensemble;
    if (members === undefined) return;
    if (!Array.isArray(members) || members.length < 2 || members.length > 16) {
      throw invalid('ensemble must be an array of 2 to 16 members {adapters, weight}', 'ensemble');
    }
    if (p.adapters.length > 0) {
      throw invalid('adapters must be empty when ensemble is set (each ensemble member has its own adapters)', 'adapters');
    }
    members.forEach((m: EnsembleMember, i) => {
      if (typeof m !== 'object' || m === null) throw invalid(`ensemble[${i}] must be an object {adapters, weight}`, 'ensemble');
      if (!isFiniteNumber(m.weight) || m.weight <= 0) {
        throw invalid(`ensemble[${i}].weight must be a finite number > 0, got ${JSON.stringify(m.weight)}`, 'ensemble');
      }
      this.checkAdapters(m.adapters, `ensemble[${i}].adapters`, 'ensemble');
    });
  }

  private validate(p: SequenceParams): void {
    if (this.disposed) throw new NativeError('the engine is disposed', 'disposed');
    if (typeof p !== 'object' || p === null) throw invalid('SequenceParams must be an object');
    const vocab = this.modelInfo.vocabSize;
    this.checkPrompt(p.promptIds, this.modelInfo.maxPositionEmbeddings);
    this.checkAdapters(p.adapters);
    this.checkEnsemble(p);
    const range = (name: keyof SequenceParams, ok: boolean, expected: string) => {
      if (!ok) throw invalid(`${name} must be ${expected}, got ${JSON.stringify(p[name])}`, name);
    };
    range('maxTokens', isInt(p.maxTokens) && p.maxTokens >= 1, 'an integer >= 1');
    range('temperature', isFiniteNumber(p.temperature) && p.temperature >= 0, 'a number >= 0');
    range('topP', isFiniteNumber(p.topP) && p.topP > 0 && p.topP <= 1, 'a number in (0, 1]');
    range('topK', isInt(p.topK) && p.topK >= -1, 'an integer >= -1 (0 or -1 disable it)');
    range('presencePenalty', isFiniteNumber(p.presencePenalty) && Math.abs(p.presencePenalty) <= 2, 'a number in [-2, 2]');
    range('frequencyPenalty', isFiniteNumber(p.frequencyPenalty) && Math.abs(p.frequencyPenalty) <= 2, 'a number in [-2, 2]');
    range('seed', isInt(p.seed), 'an integer');
    range('logprobs', isInt(p.logprobs) && p.logprobs >= -1 && p.logprobs <= 20, 'an integer in [-1, 20]');
    range('stopTokenIds', Array.isArray(p.stopTokenIds) && p.stopTokenIds.every((t) => isInt(t) && t >= 0 && t < vocab), `an array of token ids in [0, ${vocab})`);
    range(
      'logitBias',
      Array.isArray(p.logitBias) &&
        p.logitBias.every((e) => Array.isArray(e) && e.length === 2 && isInt(e[0]) && e[0] >= 0 && e[0] < vocab && isFiniteNumber(e[1])),
      `an array of [tokenId in [0, ${vocab}), finite bias] pairs`,
    );
    range('constrained', p.constrained === undefined || typeof p.constrained === 'boolean', 'a boolean');
    if (p.tokenMask !== undefined) {
      if (p.constrained !== true) throw invalid('tokenMask is only accepted with constrained: true', 'tokenMask');
      checkTokenMask(p.tokenMask, vocab);
    }
  }
}
