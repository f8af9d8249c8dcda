/**
 * Cooperative slicing of request preparation across event-loop turns.
 *
 * A burst of requests (e.g. 64 streams that finish on the same engine step and are replaced at
 * once) arrives in one poll phase; each request's synchronous preparation (schema check, chat
 * template, tokenization) takes up to a millisecond, so without slicing the loop is blocked for
 * tens of ms and every running stream stalls (event-loop lag). A handler calls `enterTurn()`
 * before that preparation and the returned `leave()` after it: it goes on at once while the
 * current turn has spent less than the budget on preparation, and otherwise waits for a later
 * turn (setImmediate), in arrival order. Blocking per turn is then about the budget plus one
 * request's preparation, whatever the burst size.
 *
 * One gate per process: the event loop is the shared resource.
 */

/** Preparation time allowed per loop turn before later requests wait for the next turn. */
const BUDGET_MS = 4;

/** performance.now() when this turn's preparation window opened; -1: none open. */
let windowStart = -1;
/** A request that was let through has not called leave() yet. */
let busy = false;
let scheduled = false;
const waiters: Array<(leave: () => void) => void> = [];

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(newTurn);
}

/** Next loop turn: a new window; release the first waiter (the rest follow from its leave()). */
function newTurn(): void {
  scheduled = false;
  windowStart = -1;
  if (!busy && waiters.length > 0) release();
}

function openWindow(): void {
  if (windowStart < 0) {
    windowStart = performance.now();
    schedule(); // closes the window at the next turn
  }
}

function release(): void {
  openWindow();
  busy = true;
  waiters.shift()!(leaveFn());
}

function leaveFn(): () => void {
  let left = false;
  return () => {
    if (left) return;
    left = true;
    busy = false;
    if (waiters.length === 0) return;
    if (windowStart >= 0 && performance.now() - windowStart < BUDGET_MS) release();
    else schedule();
  };
}

/**
 * Wait for a slot for synchronous request preparation; call the returned function when the
 * preparation is done (also on error). Returns synchronously in the common case.
 */
export function enterTurn(): (() => void) | Promise<() => void> {
  if (!busy && waiters.length === 0) {
    openWindow();
    if (performance.now() - windowStart < BUDGET_MS) {
      busy = true; // until leave(): a caller in the same synchronous section queues behind
      return leaveFn();
    }
  }
  schedule();
  return new Promise((resolve) => waiters.push(resolve));
}
