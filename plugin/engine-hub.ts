/**
 * One event dispatcher per engine: the engine has a single `onEvents` callback for all its
 * sequences; the hub routes each event to the request that owns the sequence.
 */
import type { NativeEngine, SequenceEvent, SequenceParams } from '../native/types.ts';

/** The part of NativeEngine the protocol layer uses (a fake engine in tests implements just this). */
export type EngineLike = Pick<NativeEngine, 'addSequence' | 'cancel' | 'onEvents'>;

/** Receives the events of one sequence, in order; the last one carries `finishReason`. */
export type SequenceHandler = (event: SequenceEvent) => void;

/** Minimal logger surface (pino-compatible). */
export interface LoggerLike {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** A logger that drops everything. */
export const silentLogger: LoggerLike = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Routes engine events by `seqId`. Registers the engine's one `onEvents` callback at
 * construction; events for unknown (already finished or foreign) sequences are dropped.
 *
 * NOTE: the engine must deliver events asynchronously (never from inside `addSequence`),
 * as the native engine does from its thread-safe function; the handler is registered right
 * after `addSequence` returns.
 */
export class EngineHub {
  private readonly handlers = new Map<number, SequenceHandler>();

  constructor(
    readonly engine: EngineLike,
    private readonly logger: LoggerLike = silentLogger,
  ) {
    engine.onEvents((events) => this.dispatch(events));
  }

  /** Sequences that have not yet reported their final event. */
  get live(): number {
    return this.handlers.size;
  }

  /** Queue a sequence and route its events to `handler`; returns the engine's seqId. */
  add(params: SequenceParams, handler: SequenceHandler): number {
    const seqId = this.engine.addSequence(params);
    this.handlers.set(seqId, handler);
    return seqId;
  }

  /** Ask the engine to cancel a sequence (it still reports a final "cancelled" event). */
  cancel(seqId: number): void {
    this.engine.cancel(seqId);
  }

  private dispatch(events: SequenceEvent[]): void {
    for (const ev of events) {
      const h = this.handlers.get(ev.seqId);
      if (!h) continue;
      if (ev.finishReason !== undefined) this.handlers.delete(ev.seqId);
      try {
        h(ev);
      } catch (err) {
        this.logger.error({ err, seqId: ev.seqId }, 'sequence event handler threw');
      }
    }
  }
}
