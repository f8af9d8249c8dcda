/**
 * Backpressure: per base model, at most `capacity` engine sequences are admitted at once (the
 * engine's batch size); further requests wait in a FIFO holding at most `maxQueued` sequences,
 * and past that get 429 with `Retry-After`. A request counts as the sequences it runs (prompts x
 * `n`): counting requests let 60 waiting `n: 16` requests (960 sequences) hold a plain request
 * back for a minute without a 429. A request larger than the whole bound still waits when it
 * finds the queue empty (else it could never run while others do). Waiting requests hold
 * nothing (no adapter pin, no KV block): the adapter is acquired only once the request is
 * admitted.
 *
 * The running and waiting adapter sets are what `vllm:lora_requests_info` reports.
 */
import { RateLimitError, ServiceUnavailableError } from './errors.ts';

/** An admitted request's place; `release()` exactly once when its sequences have ended. */
export interface Ticket {
  release(): void;
}

interface Waiter {
  units: number;
  adapters: string[];
  resolve(t: Ticket): void;
  reject(e: Error): void;
}

/** Abort hook of the waiting request (the client went away). */
export interface WaitSignal {
  onGone(cb: () => void): void;
}

function bump(m: Map<string, number>, keys: string[], d: number): void {
  for (const k of keys) {
    const v = (m.get(k) ?? 0) + d;
    if (v <= 0) m.delete(k);
    else m.set(k, v);
  }
}

/** The admission queue of one base model. */
export class Admission {
  /** Sequences admitted and not yet ended. */
  running = 0;
  /** Requests admitted and not yet ended. */
  runningRequests = 0;
  private readonly queue: Waiter[] = [];
  /** Sequences of the waiting requests (sum of their units). */
  private waitingUnits = 0;
  private readonly runningAdapters = new Map<string, number>();
  private readonly waitingAdapters = new Map<string, number>();
  private closedError: Error | undefined;

  /**
   * @param capacity Engine sequences admitted at once (Infinity: no queueing).
   * @param maxQueued Sequences allowed to wait (a request counts its units); past it, 429.
   */
  constructor(
    readonly capacity: number,
    readonly maxQueued: number,
  ) {}

  /** Requests waiting now. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Adapters (`BASE:ADAPTER`) of running requests. */
  runningAdapterIds(): string[] {
    return [...this.runningAdapters.keys()];
  }

  /** Adapters of waiting requests. */
  waitingAdapterIds(): string[] {
    return [...this.waitingAdapters.keys()];
  }

  /**
   * Admit a request of `units` sequences using `adapters`, waiting for room if needed.
   * @throws RateLimitError (429) when the queue is full; ServiceUnavailableError when closed or
   *   when the client left while waiting.
   */
  admit(units: number, adapters: string[], signal?: WaitSignal): Promise<Ticket> {
    if (this.closedError) return Promise.reject(this.closedError);
    const u = Math.max(1, Math.min(units, this.capacity));
    if (this.queue.length === 0 && this.running + u <= this.capacity) return Promise.resolve(this.grant(u, adapters));
    const full = this.queue.length > 0 ? this.waitingUnits + u > this.maxQueued : this.maxQueued < 1;
    if (full) {
      return Promise.reject(
        new RateLimitError(
          `The server is busy: ${this.queue.length} requests (${this.waitingUnits} sequences) are already waiting for this model. Retry shortly.`,
          1,
          'queue_full',
        ),
      );
    }
    return new Promise<Ticket>((resolve, reject) => {
      const w: Waiter = { units: u, adapters, resolve, reject };
      this.queue.push(w);
      this.waitingUnits += u;
      bump(this.waitingAdapters, adapters, 1);
      signal?.onGone(() => {
        if (this.remove(w)) reject(new ServiceUnavailableError('The client went away while the request was queued.'));
      });
    });
  }

  /** Refuse new requests and fail every waiting one with `err`. */
  close(err: Error): void {
    this.closedError = err;
    this.waitingUnits = 0;
    for (const w of this.queue.splice(0)) {
      bump(this.waitingAdapters, w.adapters, -1);
      w.reject(err);
    }
  }

  private remove(w: Waiter): boolean {
    const i = this.queue.indexOf(w);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    this.waitingUnits -= w.units;
    bump(this.waitingAdapters, w.adapters, -1);
    return true;
  }

  private grant(units: number, adapters: string[]): Ticket {
    this.running += units;
    this.runningRequests++;
    bump(this.runningAdapters, adapters, 1);
    let done = false;
    return {
      release: () => {
        if (done) return;
        done = true;
        this.running -= units;
        this.runningRequests--;
        bump(this.runningAdapters, adapters, -1);
        this.pump();
      },
    };
  }

  private pump(): void {
    while (this.queue.length > 0 && this.running + this.queue[0]!.units <= this.capacity) {
      const w = this.queue.shift()!;
      this.waitingUnits -= w.units;
      bump(this.waitingAdapters, w.adapters, -1);
      w.resolve(this.grant(w.units, w.adapters));
    }
  }
}
