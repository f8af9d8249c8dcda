/**
 * Worker-thread entry for `materializeMerge` (./materialize.ts), so merges (seconds of SVD for
 * real shapes) never run on the event loop. Spawned by ./off-thread.ts with
 * `workerData = {spec, info, outDir}`; posts `{ok: MergeResult}` or `{err: {...}}`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { OpenLoraError } from '../../plugin/errors.ts';
import { materializeMerge } from './materialize.ts';

const { spec, info, outDir } = workerData;
try {
  parentPort!.postMessage({ ok: await materializeMerge(spec, info, outDir) });
} catch (e) {
  const err = e as Error;
  const known = err instanceof OpenLoraError;
  parentPort!.postMessage({
    err: {
      message: err?.message ?? String(e),
      status: known ? err.status : 500,
      param: known ? err.param : null,
      code: known ? err.code : null,
      type: known ? err.type : 'server_error',
    },
  });
}
