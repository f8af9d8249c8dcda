/**
 * A single-consumer async queue: producers `push`, then `close` or `fail`; the consumer reads
 * it with `for await`. Used to turn engine callbacks into an async iterator.
 */
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private closed = false;
  private error: unknown;
  private failed = false;

  /** Queue an item (ignored after close/fail). */
  push(item: T): void {
    if (this.closed || this.failed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  /** End the stream after the queued items. */
  close(): void {
    if (this.closed || this.failed) return;
    this.closed = true;
    this.wake();
  }

  /** End the stream with an error, raised after the queued items. */
  fail(err: unknown): void {
    if (this.closed || this.failed) return;
    this.failed = true;
    this.error = err;
    this.wake();
  }

  private wake(): void {
    if (!this.waiter || this.items.length > 0) return;
    const w = this.waiter;
    this.waiter = undefined;
    if (this.failed) w.reject(this.error);
    else w.resolve({ value: undefined, done: true });
  }

  /** Next item; rejects with the failure once the queue is drained. */
  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.failed) return Promise.reject(this.error);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return { next: () => this.next() };
  }
}
