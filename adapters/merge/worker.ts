/**
 * Worker-thread entry for `materializeMerge` (./materialize.ts), so merges (seconds of SVD for
 * real shapes) never run on the event loop. Spawned by ./off-thread.ts with
 * `workerData = {spec, info, outDir}`; posts `{ok: MergeResult}` or
 * `{err: {message, code, param}}` (code and param of an AdapterError, else null).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AdapterError } from '../errors.ts';
import { materializeMerge } from './materialize.ts';

const { spec, info, outDir } = workerData;
try {
  parentPort!.postMessage({ ok: await materializeMerge(spec, info, outDir) });
} catch (e) {
  const err = e as Error;
  const known = err instanceof AdapterError;
  parentPort!.postMessage({
    err: { message: err?.message ?? String(e), code: known ? err.code : null, param: known ? err.param : null },
  });
}
