/**
 * What every route handler gets from the router (plugin/index.ts).
 */
import type { Admission } from '../admission.ts';
import type { Generation } from '../generate.ts';
import type { LoggerLike } from '../logger.ts';
import type { ModelRegistry } from '../registry.ts';

/** Services the routes need from the router. */
export interface RouteContext {
  /** The registry once models are loaded; rejects with 503 when loading failed or the router closed. */
  registry(): Promise<ModelRegistry>;
  /** Register an in-flight generation (aborted by `close()`); call the result when done. */
  track(gen: Generation): () => void;
  /**
   * Wait for a generation that is starting (its adapters are being pinned, which may wait for a
   * slot): settles as `start` does, or rejects with the shutdown's 503 when the router closes
   * and its grace runs out first (the generation is then aborted as soon as it exists).
   */
  starting(start: Promise<Generation>): Promise<Generation>;
  /** The admission queue of a base model. */
  admission(model: string): Admission;
  /** The router's logger (a request's own logger, with its id bound, is `requestLog(res, logger)`). */
  logger: LoggerLike;
}
