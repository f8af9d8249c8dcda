/**
 * The one event router per engine: the native engine has a single `onEvents` callback for
 * all its sequences (one array per step); this routes each event to the handler of the
 * sequence it belongs to. Used by native/engine.ts (`Engine`), its only user.
 */
import type { NativeEngine, SequenceEvent, SequenceParams } from './types.ts';

/**
 * The part of NativeEngine the router needs; `stop` / `setTokenMask` only for constrained decoding.
 */
export type EngineLike = Pick<NativeEngine, 'addSequence' | 'cancel' | 'onEvents'> & Partial<Pick<NativeEngine, 'stop' | 'setTokenMask'>>;

/** Receives the events of one sequence, in order; the last one carries `finishReason`. */
export type SequenceHandler = (event: SequenceEvent) => void;

/**
 * Routes engine events by `seqId`. Registers the engine's one `onEvents` callback at
 * construction; events for unknown (already finished or foreign) sequences are dropped.
 * A throwing handler does not starve the others: `onHandlerError` gets the error.
 *
 * NOTE: the engine must deliver events asynchronously (never from inside `addSequence`),
 * as the native engine does from its thread-safe function; the handler is registered right
 * after `addSequence` returns.
 */
export class SequenceDispatcher {
  private readonly handlers = new Map<number, SequenceHandler>();

  /**
   * @param engine The engine whose events to route (its `onEvents` callback is taken over).
   * @param onHandlerError Called with (error, seqId) when a handler throws.
   */
  constructor(
    readonly engine: EngineLike,
    private readonly onHandlerError: (err: unknown, seqId: number) => void,
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

  /** End a sequence with finishReason "stop" (NativeEngine.stop). @throws Error when the engine has no stop. */
  stop(seqId: number): void {
    if (!this.engine.stop) throw new Error('this engine does not support stop(seqId)');
    this.engine.stop(seqId);
  }

  /** The next token's mask of a constrained sequence (NativeEngine.setTokenMask). @throws Error when the engine has no setTokenMask. */
  setTokenMask(seqId: number, mask: Int32Array): void {
    if (!this.engine.setTokenMask) throw new Error('this engine does not support constrained decoding (setTokenMask)');
    this.engine.setTokenMask(seqId, mask);
  }

  private dispatch(events: SequenceEvent[]): void {
    for (const ev of events) {
      const h = this.handlers.get(ev.seqId);
      if (!h) continue;
      if (ev.finishReason !== undefined) this.handlers.delete(ev.seqId);
      try {
        h(ev);
      } catch (err) {
        this.onHandlerError(err, ev.seqId);
      }
    }
  }
}
