/**
 * `materializeMerge` on a worker thread: the event loop only waits for a message.
 *
 * One short-lived worker per merge (merges are computed once per canonical spec and cached, so
 * they are rare); AdapterErrors from the merge come back as `AdapterError` with the same code,
 * message and `param`. The worker is terminated (its CPU work stops at once, even inside a
 * module's SVD) when `signal` aborts or `timeoutMs` passes; the caller removes what it had written.
 */
import { Worker } from 'node:worker_threads';
import type { ModelInfo } from '../../native/types.ts';
import { AdapterError, type AdapterErrorCode } from '../errors.ts';
import type { MergeResult, MergeSpec } from './materialize.ts';

/** Options of materializeMergeOffThread. */
export interface OffThreadOptions {
  /** Abort: the worker is terminated and the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Time limit (ms): past it the worker is terminated and the promise rejects with AdapterError `merge_timeout` (param `merge`). */
  timeoutMs?: number;
  /** Called with the worker once it is spawned (tests watch its exit). */
  onWorker?: (w: Worker) => void;
}

/** The `merge_timeout` error: names `merge` and the limit. */
export function mergeTimeoutError(ms: number): AdapterError {
  return new AdapterError(
    `merge: the merge took longer than the ${ms / 1000} s limit (adapterCache.mergeTimeoutMs) and was stopped; use a cheaper merge.strategy (linear, cat, svd), a smaller merge.svd_rank, or fewer adapters.`,
    'merge_timeout',
    { param: 'merge' },
  );
}

/**
 * Run `materializeMerge(spec, info, outDir)` in a worker thread.
 * @param spec Adapters must be given by `dir` (parsed objects do not cross threads).
 * @throws AdapterError (`invalid_merge`, `invalid_adapter`) for invalid merges, `merge_timeout` past
 *   `o.timeoutMs`; `o.signal.reason` when aborted; Error for worker failures. On abort and timeout
 *   the promise settles only once the worker has exited (nothing writes to `outDir` after it).
 */
export function materializeMergeOffThread(spec: MergeSpec, info: ModelInfo, outDir: string, o: OffThreadOptions = {}): Promise<MergeResult> {
  if (o.signal?.aborted) return Promise.reject(o.signal.reason);
  return new Promise((resolve, reject) => {
    // NOTE: worker-boot.mjs registers the TypeScript loader in the worker (Node 20 workers do
    // not inherit the parent's `--import tsx` hooks), then runs worker.ts.
    const worker = new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: { spec, info, outDir } });
    o.onWorker?.(worker);
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    let stopped: { err: unknown } | undefined;  // why we terminate it: what its exit rejects with
    const stop = (err: unknown) => {
      if (settled || stopped) return;
      stopped = { err };
      void worker.terminate();
    };
    const onAbort = () => stop(o.signal!.reason);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = o.timeoutMs !== undefined ? setTimeout(() => stop(mergeTimeoutError(o.timeoutMs!)), o.timeoutMs) : undefined;
    worker.once('message', (m: { ok?: MergeResult; err?: { message: string; code: AdapterErrorCode | null; param: string | null } }) => {
      if (stopped) return;  // too late: its exit settles
      settle(() => {
        if (m.ok) resolve(m.ok);
        else if (m.err?.code) reject(new AdapterError(m.err.message, m.err.code, { param: m.err.param }));
        else reject(new Error(`merge failed: ${m.err?.message ?? 'unknown error'}`));
      });
    });
    worker.once('error', (e) => {
      if (!stopped) settle(() => reject(e));
    });
    worker.once('exit', (code) => settle(() => reject(stopped ? stopped.err : new Error(`merge worker exited with code ${code}`))));
  });
}
