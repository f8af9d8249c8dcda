/**
 * `GrammarService`: one model's xgrammar, on a worker thread, seen from the event loop.
 *
 * - `open(spec)` compiles the spec (LRU-cached in the worker by `specKey`) and returns a
 *   `SequenceGrammar` (one matcher per generated sequence) with the mask of its first position.
 * - `SequenceGrammar.accept(token)` advances the matcher and resolves with the next mask; the
 *   accepts of one engine step are sent to the worker as one message (microtask batching).
 *
 * Bounds: a spec over `maxSpecBytes` is refused before compiling; a compile running longer than
 * `compileTimeoutMs` is refused (400 naming the spec's field) and the worker is replaced; live
 * matchers are rebuilt in the new worker by replaying their accepted tokens, so other requests
 * only pause. A spec refused for time is remembered and refused at once afterwards.
 */
import { Worker } from 'node:worker_threads';
import { InvalidRequestError } from '../errors.ts';
import type { Reply, Request, StepResult, WorkerInit } from './protocol.ts';
import { findUnsupportedFeature } from './schema-check.ts';
import { jsonDepth, MAX_JSON_DEPTH } from '../json-depth.ts';
import { specBytes, specKey, type GrammarSpec } from './spec.ts';
import type { XGrammarVocab } from './vocab.ts';

/** Options of a `GrammarService`. */
export interface GrammarServiceOptions {
  /** Compiled grammars kept in the worker's LRU (default 64). */
  cacheSize?: number;
  /** Longest a single compile may run before the spec is refused (default 10 000 ms). */
  compileTimeoutMs?: number;
  /** Largest spec source accepted, in UTF-8 bytes of its canonical JSON (default 65 536). */
  maxSpecBytes?: number;
}

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  /** The spec being opened (for timeout messages and replays). */
  spec?: GrammarSpec;
}

/** The grammar state of one generated sequence. */
export class SequenceGrammar {
  /** Tokens accepted so far (replayed if the worker is replaced). */
  readonly accepted: number[] = [];
  /** Whether the matcher accepted a stop token. */
  terminated: boolean;
  /** The mask for the next position: Int32Array of ceil(vocabSize / 32) words. */
  mask: Int32Array;
  private closed = false;

  /** @internal Created by `GrammarService.open`. */
  constructor(
    private readonly service: GrammarService,
    readonly matcherId: number,
    readonly key: string,
    readonly spec: GrammarSpec,
    first: { mask: Int32Array; terminated: boolean },
  ) {
    this.mask = first.mask;
    this.terminated = first.terminated;
  }

  /**
   * Advance by one sampled token. Resolves with the worker's answer: `accepted` false means the
   * token broke the grammar (it should not happen when the mask was applied).
   */
  async accept(token: number): Promise<StepResult> {
    const r = await this.service.step(this.matcherId, token);
    if (r.accepted) this.accepted.push(token);
    this.terminated = r.terminated;
    if (r.mask) this.mask = r.mask;
    return r;
  }

  /** Whether `token` is allowed by the current mask. */
  allows(token: number): boolean {
    return ((this.mask[token >> 5]! >>> (token & 31)) & 1) === 1;
  }

  /** Free the matcher (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.service.release(this);
  }
}

/** One model's grammar compiler and matchers, on a worker thread. */
export class GrammarService {
  /** Resolves once the worker has built the TokenizerInfo (ms it took). */
  ready: Promise<number>;
  private worker!: Worker;
  private readonly pending = new Map<number, Pending>();
  private readonly live = new Map<number, SequenceGrammar>();
  private readonly refused = new Map<string, string>();
  private nextId = 1;
  private batch: Array<{ matcherId: number; token: number; resolve: (r: StepResult) => void; reject: (e: Error) => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;
  private readonly opts: Required<GrammarServiceOptions>;

  /**
   * Start the worker for one model's vocabulary (see ./vocab.ts `buildXGrammarVocab`).
   * Building the TokenizerInfo takes ~1-3 s for a 128k vocabulary; `open` waits for it.
   */
  constructor(
    private readonly vocab: XGrammarVocab,
    options: GrammarServiceOptions = {},
  ) {
    this.opts = { cacheSize: 64, compileTimeoutMs: 10_000, maxSpecBytes: 65_536, ...options };
    this.ready = this.start();
  }

  /** Words in one mask: ceil(vocabSize / 32). */
  get maskWords(): number {
    return Math.ceil(this.vocab.vocabSize / 32);
  }

  private start(): Promise<number> {
    const init: WorkerInit = { vocab: this.vocab, cacheSize: this.opts.cacheSize };
    const worker = new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: init });
    this.worker = worker;
    worker.unref();
    const ready = new Promise<number>((resolve, reject) => {
      worker.on('message', (m: Reply) => {
        if (m.type === 'ready') resolve(m.initMs);
        else this.onReply(m);
      });
      worker.once('error', (e) => {
        reject(e);
        this.failAll(new Error(`grammar worker failed: ${e.message}`));
      });
      worker.once('exit', (code) => {
        if (worker === this.worker && !this.disposed) this.failAll(new Error(`grammar worker exited with code ${code}`));
      });
    });
    ready.catch(() => {});
    return ready;
  }

  private onReply(m: Reply): void {
    if (m.type === 'begin') {
      const p = this.pending.get(m.id);
      if (p?.spec) this.armTimeout(m.id, p.spec);
      return;
    }
    if (m.type === 'fatal' || m.type === 'ready') {
      if (m.type === 'fatal') this.failAll(new Error(`grammar worker: ${m.message}`));
      return;
    }
    if (this.timer && this.timerId === m.id) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    p.resolve(m);
  }

  private timerId = 0;

  private armTimeout(id: number, spec: GrammarSpec): void {
    this.timerId = id;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const message = `${this.describe(spec)} could not be compiled within ${this.opts.compileTimeoutMs} ms; simplify it.`;
      this.refuse(specKey(spec), message);
      const p = this.pending.get(id);
      this.pending.delete(id);
      p?.reject(new InvalidRequestError(message, spec.param, 'grammar_too_complex'));
      this.restart();
    }, this.opts.compileTimeoutMs);
    this.timer.unref();
  }

  /** Remember a refused spec (at most 1000, the oldest forgotten first). */
  private refuse(key: string, message: string): void {
    if (this.refused.size >= 1000) this.refused.delete(this.refused.keys().next().value!);
    this.refused.set(key, message);
  }

  /** Replace the worker (after a compile overran or trapped): rebuild live matchers by replaying their tokens. */
  private restart(): void {
    const old = this.worker;
    const inflight = [...this.pending.values()];
    this.pending.clear();
    this.ready = this.start();
    void old.terminate();
    // Live matchers are rebuilt first (calls reach the worker in call order), then the opens
    // and steps that were waiting behind the compile are sent again.
    for (const sg of this.live.values()) {
      this.call({ type: 'open', id: 0, matcherId: sg.matcherId, key: sg.key, spec: sg.spec, replay: sg.accepted }).catch(() => {});
    }
    for (const p of inflight) p.reject(new RetryError());
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const b of this.batch) b.reject(err);
    this.batch = [];
  }

  private describe(spec: GrammarSpec): string {
    return `The ${spec.kind === 'json_schema' ? 'JSON schema' : spec.kind === 'ebnf' ? 'grammar' : spec.kind.replace('_', ' ')} in '${spec.param}'`;
  }

  /** Post a request and wait for its reply (id assigned here). */
  private async call(req: Request & { id: number }, spec?: GrammarSpec): Promise<Reply> {
    await this.ready;
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, spec });
      this.worker.postMessage({ ...req, id });
    });
  }

  /**
   * Compile `spec` (or take it from the cache) and start a matcher for one sequence.
   * @throws InvalidRequestError (400, `param` = the spec's field) when the spec is too large,
   *   uses a JSON-schema keyword xgrammar does not enforce (./schema-check.ts), does not compile (xgrammar's reason is in the message) or overran the compile time.
   */
  async open(spec: GrammarSpec): Promise<SequenceGrammar> {
    if (this.disposed) throw new Error('grammar service disposed');
    // A schema sent as JSON text (guided_json, structured_outputs.json) is parsed after the body's
    // depth bound: bound it here too, before any recursive walk (specBytes, the schema check).
    const tree = spec.kind === 'json_schema' ? spec.schema : spec.kind === 'structural_tag' ? spec.tag : undefined;
    if (tree !== undefined && jsonDepth(tree, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
      throw new InvalidRequestError(`${this.describe(spec)} nests more than ${MAX_JSON_DEPTH} levels of objects and arrays.`, spec.param, 'grammar_too_large');
    }
    const bytes = specBytes(spec);
    if (bytes > this.opts.maxSpecBytes) {
      throw new InvalidRequestError(`${this.describe(spec)} is ${bytes} bytes; at most ${this.opts.maxSpecBytes} are accepted.`, spec.param, 'grammar_too_large');
    }
    if (spec.kind === 'json_schema') {
      const f = findUnsupportedFeature(spec.schema);
      if (f) {
        throw new InvalidRequestError(`${this.describe(spec)} uses \`${f.keyword}\` at ${f.path}, ${f.reason ?? 'which this server cannot enforce (xgrammar ignores it)'}.`, spec.param, 'unsupported_schema_feature');
      }
    }
    const key = specKey(spec);
    const known = this.refused.get(key);
    if (known) throw new InvalidRequestError(known, spec.param, 'grammar_too_complex');
    const matcherId = this.nextId++;
    for (;;) {
      try {
        const r = await this.call({ type: 'open', id: 0, matcherId, key, spec, replay: [] }, spec);
        if (r.type === 'error') {
          if (r.poisoned) {
            this.refuse(key, `${this.describe(spec)} is not supported: ${r.message}`);
            this.restart();
          }
          throw new InvalidRequestError(`${this.describe(spec)} is not supported: ${r.message}`, spec.param, 'invalid_grammar');
        }
        if (r.type !== 'opened') throw new Error(`grammar worker: unexpected reply ${r.type}`);
        const sg = new SequenceGrammar(this, matcherId, key, spec, r);
        this.live.set(matcherId, sg);
        return sg;
      } catch (err) {
        if (!(err instanceof RetryError)) throw err;
      }
    }
  }

  /** @internal Queue one accept; all accepts queued in the same tick go in one message. */
  step(matcherId: number, token: number): Promise<StepResult> {
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) queueMicrotask(() => this.flush());
      this.batch.push({ matcherId, token, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    this.call({ type: 'step', id: 0, items: batch.map(({ matcherId, token }) => ({ matcherId, token })) }).then(
      (r) => {
        if (r.type !== 'stepped') throw new Error(`grammar worker: unexpected reply ${r.type}`);
        r.results.forEach((res, i) => batch[i]!.resolve(res));
      },
      (err) => {
        if (err instanceof RetryError) for (const b of batch) this.step(b.matcherId, b.token).then(b.resolve, b.reject);
        else for (const b of batch) b.reject(err as Error);
      },
    );
  }

  /** @internal Free a sequence's matcher. */
  release(sg: SequenceGrammar): void {
    this.live.delete(sg.matcherId);
    if (!this.disposed) this.worker.postMessage({ type: 'close', matcherId: sg.matcherId } satisfies Request);
  }

  /** Number of live matchers (for tests and metrics). */
  get liveMatchers(): number {
    return this.live.size;
  }

  /** Stop the worker; pending calls reject. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.failAll(new Error('grammar service disposed'));
    if (this.timer) clearTimeout(this.timer);
    await this.worker.terminate();
  }
}

/** A call that was in flight when the worker was replaced: send it again. */
class RetryError extends Error {}
