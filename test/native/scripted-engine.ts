/**
 * The shared engine double of the tests (issue 12: one scripted engine, behind the real `Engine`
 * face): `ScriptedEngine` and the demo model's `ModelInfo` (`tinyInfo`, `TINY_INFO`).
 */
import { Engine } from '../../native/engine.ts';
import type { AdapterLoadSpec, EngineStats, ModelInfo, NativeEngine, PromptLogprobsResult, SequenceEvent, SequenceParams } from '../../native/types.ts';

/** examples/models/tiny-shakespeare/config.json as the engine reports it. */
export function tinyInfo(over: Partial<ModelInfo> = {}): ModelInfo {
  return {
    modelType: 'llama', architecture: 'LlamaForCausalLM', textModelPrefix: 'model', supportedArchitectures: ['LlamaForCausalLM'], vocabSize: 1024, hiddenSize: 256, intermediateSize: 704, numHiddenLayers: 4,
    numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 32, maxPositionEmbeddings: 512, maxModelLen: 512, derivedMaxModelLen: 512, dtype: 'BF16',
    backend: 'cpu', backendReason: 'test', maxLoras: 4, maxLoraRank: 64, quantization: 'none', kvCacheDtype: 'float32', activationDtype: 'float32', kvCacheBytes: 0, numKvBlocks: 0, ...over,
  };
}

/** The demo model's engine info as the scripted engine reports it. */
export const TINY_INFO: ModelInfo = tinyInfo({ backendReason: 'fake' });

/** Tokens a sequence emits, given its params and its order of arrival (0, 1, ...). */
export type Script = (params: SequenceParams, seqIndex: number) => number[];

interface Live {
  params: SequenceParams;
  tokens: number[];
  pos: number;
  cancelled: boolean;
}

/**
 * ScriptedEngine behaviour. Sequences: `repeat` restarts a script that ran out; `failAt` finishes
 * sequences "error" at that token index; `alternatives` are the ids of top_logprobs entries 1, 2,
 * ... (default 101, 102, ...). Adapter slots: `slots` of them (default 0: every load refused),
 * each load answered after `loadDelayMs` (default 0).
 */
export interface ScriptedEngineOptions {
  repeat?: boolean;
  failAt?: number;
  alternatives?: number[];
  slots?: number;
  loadDelayMs?: number;
  /** Prompt scoring (`forward` with promptTopN): answered after this many ms (zeros; nextTopIds 0..), unless cancelled first. */
  scoreDelayMs?: number;
  /** The model's vocab_size in `info()` (default the demo's 1024): a real tokenizer's size when a test serves one. */
  vocabSize?: number;
}

/**
 * The shared engine double: a NativeEngine stand-in behind the real `Engine` face (`asEngine()`),
 * used by the plugin, gateway and console tests (scripted sequences) and the adapter tests
 * (adapter slots). Every step (one setImmediate) emits one token for each live sequence. Honours
 * maxTokens and stopTokenIds like the real engine; when the script runs out it emits the first
 * stop token (or, with `repeat`, starts the script again). `failAt` makes sequences finish
 * "error" at that token index. Adapter slots: `loadAdapter` records every spec (`loads`), waits
 * `loadDelayMs`, fails the next `failNext` loads with `failCode` on the error (as the addon sets
 * `err.code`; undefined: an Error without a code, i.e. an engine bug), else takes the lowest free
 * of `slots` slots or throws "no free adapter slot"; `unloadAdapter` frees a loaded slot
 * (`unloads`) and throws for one not loaded.
 */
export class ScriptedEngine implements NativeEngine {
  readonly added: SequenceParams[] = [];
  readonly cancelled: number[] = [];
  /** Every loadAdapter spec, in call order. */
  readonly loads: AdapterLoadSpec[] = [];
  /** Every unloaded slot, in call order. */
  readonly unloads: number[] = [];
  /** Slots loaded now. */
  readonly slotsInUse = new Set<number>();
  /** Reject the next N loads (with `failCode` on the error). */
  failNext = 0;
  /** `err.code` of the simulated load failure (undefined: an Error without a code). */
  failCode: string | undefined = 'bad_file';
  paused = false;
  private cb: (events: SequenceEvent[]) => void = () => {};
  private readonly live = new Map<number, Live>();
  private nextId = 1;
  private scheduled = false;
  private cancelWaiters: Array<() => void> = [];

  constructor(
    private readonly script: Script,
    private readonly opts: ScriptedEngineOptions = {},
  ) {}

  onEvents(cb: (events: SequenceEvent[]) => void): void {
    this.cb = cb;
  }

  info(): ModelInfo {
    return this.opts.vocabSize === undefined ? TINY_INFO : { ...TINY_INFO, vocabSize: this.opts.vocabSize };
  }

  stats(): EngineStats {
    const running = this.live.size;
    return { running, waiting: 0, slotsUsed: 0, steps: 0, kvBlocksTotal: 64, kvBlocksFree: 64 - running, kvBlocksCached: 0, prefixHitTokens: 0, preemptions: 0, scoring: 0, weightBytes: 0, kvCacheBytes: 64 * 1024, kvUsedBytes: running * 1024, adapterBytes: 0 };
  }

  async loadAdapter(spec: AdapterLoadSpec): Promise<number> {
    this.loads.push(spec);
    await new Promise((r) => setTimeout(r, this.opts.loadDelayMs ?? 0));
    if (this.failNext > 0) {
      this.failNext--;
      throw Object.assign(new Error('lora_A of layer 0 q_proj: simulated engine failure'), this.failCode ? { code: this.failCode } : {});
    }
    for (let s = 0; s < (this.opts.slots ?? 0); s++) {
      if (!this.slotsInUse.has(s)) {
        this.slotsInUse.add(s);
        return s;
      }
    }
    throw new Error('no free adapter slot');
  }

  unloadAdapter(slot: number): void {
    if (!this.slotsInUse.delete(slot)) throw new Error(`slot ${slot} is not loaded`);
    this.unloads.push(slot);
  }

  /** Constrained decoding is not scripted: stop cancels, masks are ignored. */
  stop(seqId: number): void {
    this.cancel(seqId);
  }

  setTokenMask(): void {}

  /** Scorings in flight by cancel id: their rejection. */
  private readonly scorings = new Map<number, (err: Error) => void>();

  /** No logits; a prompt scoring (promptTopN given) is answered with zeros after `scoreDelayMs`. */
  async forward(ids: number[], _adapters?: unknown, promptTopN?: number, cancelId = 0, nextTopN = 0): Promise<never> {
    if (promptTopN === undefined) throw new Error('ScriptedEngine computes no logits');
    const n = ids.length;
    const result: PromptLogprobsResult = {
      tokenLogprobs: new Float32Array(n - 1),
      tokenRanks: new Int32Array(n - 1).fill(1),
      topIds: new Int32Array((n - 1) * promptTopN),
      topLogprobs: new Float32Array((n - 1) * promptTopN),
      topN: promptTopN,
      numTokens: n,
      vocabSize: this.opts.vocabSize ?? TINY_INFO.vocabSize,
      ...(nextTopN > 0 ? { nextTopIds: Int32Array.from({ length: nextTopN }, (_, i) => i), nextTopLogprobs: new Float32Array(nextTopN) } : {}),
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.scorings.delete(cancelId);
        resolve(result as never);  // the promptTopN overload's result
      }, this.opts.scoreDelayMs ?? 0);
      if (cancelId > 0) {
        this.scorings.set(cancelId, (err) => {
          clearTimeout(timer);
          reject(err);
        });
      }
    });
  }

  /** Drop a scoring before it answers: it rejects "cancelled", as the engine's. */
  cancelForward(cancelId: number): void {
    const drop = this.scorings.get(cancelId);
    this.scorings.delete(cancelId);
    drop?.(new Error('cancelled'));
  }

  async dispose(): Promise<void> {}

  /** This double behind the one engine face the plugin takes (one Engine per double: it owns onEvents). */
  asEngine(): Engine {
    return (this.face ??= new Engine(this));
  }

  private face: Engine | undefined;

  addSequence(params: SequenceParams): number {
    const id = this.nextId++;
    this.live.set(id, { params, tokens: this.script(params, this.added.length), pos: 0, cancelled: false });
    this.added.push(params);
    this.schedule();
    return id;
  }

  cancel(seqId: number): void {
    const s = this.live.get(seqId);
    if (!s) return;
    s.cancelled = true;
    this.cancelled.push(seqId);
    for (const w of this.cancelWaiters.splice(0)) w();
    this.schedule();
  }

  /** Resolves at the next cancel call (or at once if one happened). */
  waitCancel(): Promise<void> {
    if (this.cancelled.length > 0) return Promise.resolve();
    return new Promise((r) => this.cancelWaiters.push(r));
  }

  /** Number of sequences that have not finished. */
  get liveCount(): number {
    return this.live.size;
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.paused) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.step();
    });
  }

  private step(): void {
    if (this.paused) return;
    const events: SequenceEvent[] = [];
    for (const [seqId, s] of this.live) {
      if (s.cancelled) {
        events.push({ seqId, token: -1, finishReason: 'cancelled', promptTokens: s.params.promptIds.length, completionTokens: s.pos });
        this.live.delete(seqId);
        continue;
      }
      if (this.opts.failAt !== undefined && s.pos === this.opts.failAt) {
        events.push({ seqId, token: -1, finishReason: 'error', error: 'fake engine failure' });
        this.live.delete(seqId);
        continue;
      }
      const i = s.pos++;
      const stops = s.params.stopTokenIds;
      const token = s.tokens[this.opts.repeat ? i % s.tokens.length : i] ?? stops[0] ?? 0;
      const ev: SequenceEvent = { seqId, token };
      if (s.params.logprobs >= 0) {
        ev.logprob = -0.25 - i / 100;
        if (s.params.logprobs > 0) {
          ev.topLogprobs = Array.from({ length: s.params.logprobs }, (_, k) => ({
            token: k === 0 ? token : (this.opts.alternatives?.[k - 1] ?? 100 + k),
            logprob: -0.25 - k,
          }));
        }
      }
      if (stops.includes(token)) ev.finishReason = 'stop';
      else if (s.pos >= s.params.maxTokens) ev.finishReason = 'length';
      if (ev.finishReason) {
        ev.promptTokens = s.params.promptIds.length;
        ev.completionTokens = s.pos;
        this.live.delete(seqId);
      }
      events.push(ev);
    }
    if (events.length > 0) this.cb(events);
    if (this.live.size > 0) this.schedule();
  }
}
