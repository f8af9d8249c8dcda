// Grammar worker bootstrap: Node 20 does not apply the parent's `--import tsx` loader hooks
// inside worker threads, so register tsx here, then load the TypeScript worker (./worker.ts).
import { register } from 'tsx/esm/api';

register();
await import(new URL('./worker.ts', import.meta.url).href);
