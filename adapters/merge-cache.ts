/**
 * Materialised merges as synthetic adapters.
 *
 * A merge (linear, ties, dare_*, magnitude_prune, svd variants) is computed once per canonical
 * spec on a worker thread, written as a PEFT folder under `dir/<name>` (atomically, by adapters/merge/), then
 * registered in the base's AdapterManager as a synthetic adapter named `merge-<hash>` and
 * acquired like any adapter: same slots, pins and LRU eviction. Concurrent requests for the
 * same merge share one computation (single-flight). A merge refused as the client's error (4xx:
 * rank mismatch, bad density, ...) is remembered for FAILURE_TTL_MS, so repeating the same bad
 * request does not cost another computation.
 *
 * NOTE(why): each computation is a worker thread and an svd merge of a real model takes minutes of
 * CPU, so distinct merges are bounded per base: at most MAX_RUNNING_MERGES compute at once, at most
 * MAX_QUEUED_MERGES wait, and a request for one more distinct merge gets 503 `merges_busy` with
 * Retry-After instead of another thread (requests for a merge already running or queued join it).
 *
 * NOTE(why): every distinct weight set is another merge folder (hundreds of MB on a real model),
 * so a client varying `0.5001`, `0.5002`, ... could fill the disk. At most `maxKept` merges are
 * kept per base (MAX_KEPT_MERGES, config adapterCache.maxMerges): past it the least recently
 * acquired is unregistered (its running requests finish) and its folder deleted once nothing
 * reads it. A merge whose members changed on disk, or whose registration failed, loses its
 * folder the same way.
 *
 * NOTE(why): an abandoned merge must not keep a core busy (two abandoned `*_svd` requests took
 * both cores of a 2-core host for minutes). Each computation counts the requests waiting for it;
 * when the last one leaves (its AbortSignal aborts: the client disconnected) the worker is
 * terminated, or the queued computation leaves the queue, and the partial folder is deleted
 * before the name can be built again. A computation past `timeoutMs`
 * (adapterCache.mergeTimeoutMs) is stopped the same way and fails with 504 `merge_timeout`,
 * remembered like a refusal for FAILURE_TTL_MS so repeating the request costs nothing.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelInfo } from '../native/types.ts';
import { AdapterError } from './errors.ts';
import { MERGE_NAME_PREFIX } from './registry.ts';
import type { Composition } from './composition.ts';
import { canonicalMergeKey, type MergeSpec } from './merge/materialize.ts';
import { materializeMergeOffThread, type OffThreadOptions } from './merge/off-thread.ts';
import type { AdapterInfo, AdapterLease } from './types.ts';

/** What the cache needs from the manager it registers into. */
export interface MergeHost {
  get(name: string): AdapterInfo | undefined;
  registerSynthetic(name: string, dir: string): Promise<AdapterInfo>;
  acquire(name: string): Promise<AdapterLease>;
  /** Content identity (sha256) of a member's files now (AdapterManager.identity). */
  identity(name: string): Promise<string>;
  /** Forget a synthetic merge whose members changed (running requests finish first). */
  unregister(name: string): boolean;
  /** Whether an unregistered adapter still has requests or a load in flight (AdapterManager.isDraining). */
  isDraining(name: string): boolean;
}

/** How long a merge refused with a 4xx is answered from memory (its members may change on disk). */
export const FAILURE_TTL_MS = 60_000;
/** Most refused merges remembered (oldest forgotten first). */
const MAX_FAILURES = 256;
/** Distinct merges of one base computed at once (each on its own worker thread). */
export const MAX_RUNNING_MERGES = 2;
/** Distinct merges of one base waiting for a turn; one more is refused with `merges_busy`. */
export const MAX_QUEUED_MERGES = 8;

/** Materialised merges of one base kept (folders and synthetic adapters); the least recently acquired go first. */
export const MAX_KEPT_MERGES = 64;

/** Default time limit of one merge computation (ms); config adapterCache.mergeTimeoutMs. */
export const MERGE_TIMEOUT_MS = 120_000;

/** Limits of MergeCache (defaults: MAX_RUNNING_MERGES, MAX_QUEUED_MERGES, MAX_KEPT_MERGES, MERGE_TIMEOUT_MS). */
export interface MergeLimits {
  maxRunning?: number;
  maxQueued?: number;
  maxKept?: number;
  /** Time limit of one computation (ms), queue time excluded. */
  timeoutMs?: number;
  /** Passed to materializeMergeOffThread (tests watch the worker). */
  onWorker?: OffThreadOptions['onWorker'];
}

/** One computation in flight and the requests waiting for it. */
interface Flight {
  p: Promise<void>;
  /** Aborted when the last waiter leaves. */
  ac: AbortController;
  waiters: number;
}

/** What a request that left while its merge was computed is rejected with (nobody reads it). */
const cancelled = () =>
  new AdapterError('merge: every request waiting for this merge left, so its computation was stopped; retry.', 'merge_cancelled', { param: 'merge' });

/** Single-flight materialisation of merges into synthetic adapters of one base. */
export class MergeCache {
  private readonly inFlight = new Map<string, Flight>();
  private readonly failures = new Map<string, { err: unknown; until: number }>();
  /** Merges computed (not cache hits), for tests and metrics. */
  computed = 0;
  /** Requests answered from a remembered refusal (no computation), for tests and metrics. */
  refusedFromMemory = 0;
  /** Computations running now. */
  private running = 0;
  /** Computations waiting for a turn, oldest first. */
  private readonly waiting: Array<() => void> = [];
  private readonly maxRunning: number;
  private readonly maxQueued: number;
  private readonly maxKept: number;
  private readonly timeoutMs: number;
  private readonly onWorker: OffThreadOptions['onWorker'];
  /** Merges registered now: name -> folder, least recently acquired first (Map order). */
  private readonly kept = new Map<string, string>();
  /** Folders of retired merges whose adapter may still be read: name -> folder. */
  private readonly retired = new Map<string, string>();
  /** Deletions of retired folders in progress (a merge built again under its name waits for its own). */
  private readonly deleting = new Map<string, Promise<void>>();
  /** Merges retired (LRU or stale) so far (read by tests). */
  evicted = 0;

  /**
   * @param host The base's AdapterManager.
   * @param info The base model's shapes (merges are validated against them).
   * @param dir Folder the merged adapters are written to (created when needed).
   * @param limits How many distinct merges may compute and wait at once.
   */
  constructor(
    private readonly host: MergeHost,
    private readonly info: ModelInfo,
    private readonly dir: string,
    limits: MergeLimits = {},
  ) {
    this.maxRunning = limits.maxRunning ?? MAX_RUNNING_MERGES;
    this.maxQueued = limits.maxQueued ?? MAX_QUEUED_MERGES;
    this.maxKept = limits.maxKept ?? MAX_KEPT_MERGES;
    this.timeoutMs = limits.timeoutMs ?? MERGE_TIMEOUT_MS;
    this.onWorker = limits.onWorker;
  }

  /** Merges kept now (registered, with a folder). */
  get size(): number {
    return this.kept.size;
  }

  /** Synthetic name in use per canonical key (spec without content), to retire the stale one. */
  private readonly current = new Map<string, string>();

  /**
   * The synthetic adapter name of a composition: `merge-` + 16 hex chars of sha256(canonical
   * key + each member's content identity). Keyed by content, never by name or path alone: a
   * member reloaded with other bytes, or rewritten on disk, names a new merge.
   */
  async nameOf(c: Composition): Promise<{ name: string; canonical: string }> {
    const ids = await Promise.all(c.members.map((m) => this.host.identity(m.name))); // 404 for an unknown member
    const canonical = canonicalMergeKey(this.spec(c));
    const name = MERGE_NAME_PREFIX + createHash('sha256').update(`${canonical}\n${ids.join(',')}`).digest('hex').slice(0, 16);
    return { name, canonical };
  }

  /** Computations in flight (running or queued), for tests and metrics. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /**
   * Materialise (once) and acquire the merge.
   * @param signal Aborts when the request leaves: it stops waiting, and when no other request
   *   waits for the same merge its computation is stopped and its partial folder deleted.
   * @throws AdapterError `invalid_merge` / `invalid_adapter` from the merge (bad density, rank mismatch, ...);
   *   `merges_busy` when this is a new distinct merge and the running and waiting limits are full;
   *   `merge_timeout` past the time limit; `merge_cancelled` when `signal` aborted.
   */
  async acquire(c: Composition, signal?: AbortSignal): Promise<AdapterLease> {
    const { name, canonical } = await this.nameOf(c);
    const old = this.current.get(canonical);
    if (old !== undefined && old !== name) this.retire(old); // built from bytes that are gone
    this.current.set(canonical, name);
    this.sweep();
    const held = this.host.get(name);
    if (held && !held.synthetic) {  // cannot happen: the merge- prefix is reserved (registry.ts); never serve other weights as the merge
      throw new AdapterError(`adapter ${name} is not the materialised merge of this composition`, 'adapter_name_conflict');
    }
    if (!held) {
      const failed = this.failures.get(name);
      if (failed && failed.until > Date.now()) {
        this.refusedFromMemory++;
        throw failed.err;
      }
      this.failures.delete(name);
      if (signal?.aborted) throw cancelled();
      let f = this.inFlight.get(name);
      if (!f) {
        if (this.running >= this.maxRunning && this.waiting.length >= this.maxQueued) {
          throw new AdapterError(
            `${this.running} merges are being computed and ${this.waiting.length} are waiting for this base model: retry later, or use a merge already computed.`,
            'merges_busy',
            { retryAfterSeconds: 5 },
          );
        }
        const ac = new AbortController();
        const flight: Flight = { ac, waiters: 0, p: Promise.resolve() };
        flight.p = this.build(name, c, ac.signal)
          .catch((err: unknown) => {
            // Only refusals of the input (and a merge too slow for the limit) repeat identically;
            // a busy slot, a cancellation or a failed worker may not.
            if (err instanceof AdapterError && (err.code === 'invalid_merge' || err.code === 'invalid_adapter' || err.code === 'merge_timeout')) {
              this.rememberFailure(name, err);
            }
            throw err;
          })
          .finally(() => {
            if (this.inFlight.get(name) === flight) this.inFlight.delete(name);
          });
        f = flight;
        this.inFlight.set(name, f);
      }
      await this.join(name, f, signal);
      if (!this.host.get(name)) {  // retired (LRU) by another merge before this request got to it
        throw new AdapterError('The merge was evicted by newer merges before it could run: retry.', 'merges_busy', { retryAfterSeconds: 1 });
      }
    }
    const dir = this.kept.get(name);
    if (dir !== undefined) {  // most recently used last
      this.kept.delete(name);
      this.kept.set(name, dir);
    }
    return this.host.acquire(name);
  }

  /**
   * Wait for a computation as one of its waiters. When `signal` aborts this waiter leaves with
   * `merge_cancelled`; the last one to leave stops the computation, and the name is free at once
   * for a new one (which first waits for the stopped one's folder to be deleted: `deleting`).
   */
  private join(name: string, f: Flight, signal?: AbortSignal): Promise<void> {
    f.waiters++;
    if (!signal) return f.p;  // never leaves
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        reject(cancelled());
        if (--f.waiters > 0) return;
        f.ac.abort(cancelled());
        if (this.inFlight.get(name) === f) this.inFlight.delete(name);
        const done: Promise<void> = f.p.then(() => undefined, () => undefined).finally(() => {
          if (this.deleting.get(name) === done) this.deleting.delete(name);
        });
        this.deleting.set(name, done);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      f.p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** Unregister a merge (its running requests finish) and delete its folder once nothing reads it. */
  private retire(name: string): void {
    const dir = this.kept.get(name) ?? join(this.dir, name);
    this.kept.delete(name);
    for (const [canonical, n] of this.current) if (n === name) this.current.delete(canonical);
    this.host.unregister(name);
    this.retired.set(name, dir);
    this.evicted++;
    this.sweep();
  }

  /** Delete the folders of retired merges that nothing reads any more. */
  private sweep(): void {
    for (const [name, dir] of this.retired) {
      if (this.host.isDraining(name) || this.host.get(name)) continue;
      this.retired.delete(name);
      const done = rm(dir, { recursive: true, force: true })
        .catch(() => undefined)
        .finally(() => {
          if (this.deleting.get(name) === done) this.deleting.delete(name);
        });
      this.deleting.set(name, done);
    }
  }

  private rememberFailure(name: string, err: unknown): void {
    this.failures.delete(name);
    if (this.failures.size >= MAX_FAILURES) this.failures.delete(this.failures.keys().next().value!);
    this.failures.set(name, { err, until: Date.now() + FAILURE_TTL_MS });
  }

  private spec(c: Composition): MergeSpec {
    if (c.merge.strategy === 'ensemble') throw new Error('an ensemble is not materialised');
    return {
      adapters: c.members.map((m) => {
        const info = this.host.get(m.name);
        if (!info) throw new Error(`merge member ${m.name} is not registered`);
        return { dir: info.dir, name: m.name, weight: m.weight };
      }),
      strategy: c.merge.strategy,
      density: c.merge.density,
      majoritySignMethod: c.merge.majority_sign_method,
      svdRank: c.merge.svd_rank,
      seed: c.merge.seed,
    };
  }

  /** Take a computing turn: at once while fewer than maxRunning run, else in queue order; leaves the queue when `signal` aborts. */
  private turn(signal: AbortSignal): Promise<void> {
    if (this.running < this.maxRunning) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const go = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(go);
    });
  }

  private async build(name: string, c: Composition, signal: AbortSignal): Promise<void> {
    await this.turn(signal);
    try {
      const out = join(this.dir, name);
      // Built again after it was retired or stopped: its old folder is not deleted under the new one.
      this.retired.delete(name);
      await this.deleting.get(name);
      if (this.host.get(name)) return;  // a stopped computation had finished (and registered) after all
      try {
        await materializeMergeOffThread(this.spec(c), this.info, out, { signal, timeoutMs: this.timeoutMs, onWorker: this.onWorker });
      } catch (err) {
        await rm(out, { recursive: true, force: true }).catch(() => undefined);  // a failed merge leaves no folder
        throw err;
      }
      this.computed++;
      try {
        await this.host.registerSynthetic(name, out);
      } catch (err) {
        await rm(out, { recursive: true, force: true }).catch(() => undefined);  // refused (e.g. non-finite weights): nothing keeps it
        throw err;
      }
      this.kept.set(name, out);
      for (const oldest of this.kept.keys()) {
        if (this.kept.size <= this.maxKept) break;
        if (oldest !== name) this.retire(oldest);
      }
    } finally {
      // Hand the turn to the oldest waiter (running stays the same), or give it back.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
