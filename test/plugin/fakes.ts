/**
 * Test doubles for the protocol layer: a scripted engine, an in-memory adapter provider, and
 * an app factory using the real demo tokenizer.
 */
import { tinyInfo } from '../adapters/helpers.ts';
import express from 'express';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AdapterInfo, AdapterLease, AdapterProvider } from '../../adapters/types.ts';
import type { Composition } from '../../adapters/composition.ts';
import { pinComposition, type PinnedComposition } from '../../adapters/pin.ts';
import { Engine } from '../../native/engine.ts';
import type { EngineStats, ForwardResult, ModelInfo, NativeEngine, SequenceEvent, SequenceParams } from '../../native/types.ts';
import { ModelNotFoundError } from '../../plugin/errors.ts';
import { loadTokenizer, openLora, type ModelTokenizer, type OpenLoraModel, type OpenLoraRouter } from '../../plugin/index.ts';

export const MODEL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/models/tiny-shakespeare');

let tokenizerPromise: Promise<ModelTokenizer> | undefined;
/** The demo model's tokenizer, loaded once per test file. */
export function demoTokenizer(): Promise<ModelTokenizer> {
  return (tokenizerPromise ??= loadTokenizer(MODEL_DIR));
}

/** The demo model's engine info. */
export const TINY_INFO: ModelInfo = tinyInfo({ backendReason: 'fake' });

/** Tokens a sequence emits, given its params and its order of arrival (0, 1, ...). */
export type Script = (params: SequenceParams, seqIndex: number) => number[];

interface Live {
  params: SequenceParams;
  tokens: number[];
  pos: number;
  cancelled: boolean;
}

/** FakeEngine behaviour: `alternatives` are the ids of top_logprobs entries 1, 2, ... (default 101, 102, ...). */
export interface FakeEngineOptions {
  repeat?: boolean;
  failAt?: number;
  alternatives?: number[];
}

/**
 * A NativeEngine stand-in: every step (one setImmediate) emits one token for each live
 * sequence. Honours maxTokens and stopTokenIds like the real engine; when the script runs
 * out it emits the first stop token (or, with `repeat`, starts the script again).
 * `failAt` makes sequences finish "error" at that token index.
 */
export class ScriptedEngine implements NativeEngine {
  readonly added: SequenceParams[] = [];
  readonly cancelled: number[] = [];
  paused = false;
  private cb: (events: SequenceEvent[]) => void = () => {};
  private readonly live = new Map<number, Live>();
  private nextId = 1;
  private scheduled = false;
  private cancelWaiters: Array<() => void> = [];

  constructor(
    private readonly script: Script,
    private readonly opts: FakeEngineOptions = {},
  ) {}

  onEvents(cb: (events: SequenceEvent[]) => void): void {
    this.cb = cb;
  }

  info(): ModelInfo {
    return TINY_INFO;
  }

  stats(): EngineStats {
    const running = this.live.size;
    return { running, waiting: 0, slotsUsed: 0, steps: 0, kvBlocksTotal: 64, kvBlocksFree: 64 - running, kvBlocksCached: 0, prefixHitTokens: 0, preemptions: 0 };
  }

  /** Adapters are the FakeAdapters' business: the engine's slots are not used. */
  async loadAdapter(): Promise<number> {
    throw new Error('ScriptedEngine has no adapter slots');
  }

  unloadAdapter(): void {}

  /** Constrained decoding is not scripted: stop cancels, masks are ignored. */
  stop(seqId: number): void {
    this.cancel(seqId);
  }

  setTokenMask(): void {}

  async forward(): Promise<ForwardResult> {
    throw new Error('ScriptedEngine computes no logits');
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

/** An AdapterProvider over a fixed list; counts acquires and releases. */
export class FakeAdapters implements AdapterProvider {
  acquired = 0;
  released = 0;
  private releaseWaiters: Array<() => void> = [];

  constructor(
    private readonly base: string,
    private readonly infos: AdapterInfo[] = defaultAdapters(base),
  ) {}

  list(): AdapterInfo[] {
    return this.infos;
  }

  get(name: string): AdapterInfo | undefined {
    return this.infos.find((a) => a.name === name);
  }

  async acquire(name: string): Promise<AdapterLease> {
    const info = this.get(name);
    if (!info) throw new ModelNotFoundError(`${this.base}:${name}`);
    this.acquired++;
    let done = false;
    return {
      name,
      slot: this.infos.indexOf(info),
      release: () => {
        if (done) throw new Error('lease released twice');
        done = true;
        this.released++;
        for (const w of this.releaseWaiters.splice(0)) w();
      },
    };
  }

  /** Compositions asked of `acquireMerged`, in order. */
  merged: Composition[] = [];

  /** A materialised merge: recorded, then served from a synthetic slot 100. */
  async acquireMerged(c: Composition): Promise<AdapterLease> {
    this.merged.push(c);
    this.acquired++;
    let done = false;
    return {
      name: 'merged',
      slot: 100,
      release: () => {
        if (done) throw new Error('lease released twice');
        done = true;
        this.released++;
        for (const w of this.releaseWaiters.splice(0)) w();
      },
    };
  }

  /** Pin a composition over this provider's acquire / acquireMerged (the real pinning decision). */
  pin(c: Composition | undefined): Promise<PinnedComposition> {
    return pinComposition(this, c);
  }

  /** Resolves once every acquired lease has been released. */
  async allReleased(): Promise<void> {
    while (this.released < this.acquired) await new Promise<void>((r) => this.releaseWaiters.push(r));
  }
}

/** The demo adapters' metadata. */
export function defaultAdapters(base: string): AdapterInfo[] {
  const mk = (name: string, rank: number, targets: string[]): AdapterInfo => ({
    name,
    base,
    dir: `/adapters/${name}`,
    rank,
    alpha: rank * 2,
    useRslora: false,
    targetModules: targets,
    created: 1700000000,
  });
  return [mk('shout', 16, ['q_proj', 'v_proj']), mk('whisper', 8, ['q_proj']), mk('romeo', 8, ['q_proj', 'v_proj'])];
}

/** An app serving one fake model named `tiny` with the real demo tokenizer (or `opts.tokenizer`). */
export async function makeApp(script: Script, opts: FakeEngineOptions & { tokenizer?: ModelTokenizer } = {}) {
  const tokenizer = opts.tokenizer ?? (await demoTokenizer());
  const engine = new ScriptedEngine(script, opts);
  const adapters = new FakeAdapters('tiny');
  const models: OpenLoraModel[] = [{ name: 'tiny', engine: engine.asEngine(), tokenizer, adapters }];
  const router: OpenLoraRouter = openLora({ models });
  const app = express();
  app.use(router);
  await router.ready;
  return { app, router, engine, adapters, tokenizer };
}

/** Parse an SSE body into its `data:` payloads (JSON objects, or the string "[DONE]"). */
export function parseSse(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((e) => e.trim() !== '')
    .map((e) => {
      const data = e
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      return data === '[DONE]' ? data : JSON.parse(data);
    });
}
