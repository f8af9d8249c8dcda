/**
 * `materializeMerge` on a worker thread: the event loop only waits for a message.
 *
 * One short-lived worker per merge (merges are computed once per canonical spec and cached, so
 * they are rare); AdapterErrors from the merge come back as `AdapterError` with the same code,
 * message and `param`.
 */
import { Worker } from 'node:worker_threads';
import type { ModelInfo } from '../../native/types.ts';
import { AdapterError, type AdapterErrorCode } from '../errors.ts';
import type { MergeResult, MergeSpec } from './materialize.ts';

/**
 * Run `materializeMerge(spec, info, outDir)` in a worker thread.
 * @param spec Adapters must be given by `dir` (parsed objects do not cross threads).
 * @throws AdapterError (`invalid_merge`, `invalid_adapter`) for invalid merges; Error for worker failures.
 */
export function materializeMergeOffThread(spec: MergeSpec, info: ModelInfo, outDir: string): Promise<MergeResult> {
  return new Promise((resolve, reject) => {
    // NOTE: worker-boot.mjs registers the TypeScript loader in the worker (Node 20 workers do
    // not inherit the parent's `--import tsx` hooks), then runs worker.ts.
    const worker = new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: { spec, info, outDir } });
    let settled = false;
    worker.once('message', (m: { ok?: MergeResult; err?: { message: string; code: AdapterErrorCode | null; param: string | null } }) => {
      settled = true;
      if (m.ok) resolve(m.ok);
      else if (m.err?.code) reject(new AdapterError(m.err.message, m.err.code, { param: m.err.param }));
      else reject(new Error(`merge failed: ${m.err?.message ?? 'unknown error'}`));
    });
    worker.once('error', (e) => {
      if (!settled) reject(e);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`merge worker exited with code ${code}`));
      settled = true;
    });
  });
}
