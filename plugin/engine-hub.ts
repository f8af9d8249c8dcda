/**
 * The protocol layer's view of an engine: the engine's event router (native/dispatch.ts)
 * with handler errors sent to the request logger, and the logger surface the plugin uses.
 */
import { SequenceDispatcher, type EngineLike } from '../native/dispatch.ts';

export type { EngineLike, SequenceHandler } from '../native/dispatch.ts';

/** Minimal logger surface (pino-compatible). */
export interface LoggerLike {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** A logger that drops everything. */
export const silentLogger: LoggerLike = { debug() {}, info() {}, warn() {}, error() {} };

/** One per engine: routes its events to the requests that own the sequences; logs handler errors. */
export class EngineHub extends SequenceDispatcher {
  constructor(engine: EngineLike, logger: LoggerLike = silentLogger) {
    super(engine, (err, seqId) => logger.error({ err, seqId }, 'sequence event handler threw'));
  }
}
