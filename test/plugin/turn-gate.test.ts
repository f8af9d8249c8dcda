import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enterTurn } from '../../plugin/turn-gate.ts';

function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test('a burst of request preparations is spread over loop turns, in arrival order', async () => {
  let turn = 0;
  let ticking = true;
  const tick = () => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  await new Promise((r) => setImmediate(r));
  const order: number[] = [];
  const turnOf: number[] = [];
  // 40 requests arrive in one turn, each with 1 ms of synchronous preparation.
  const all = Array.from({ length: 40 }, async (_, i) => {
    const leave = await enterTurn();
    try {
      order.push(i);
      turnOf.push(turn);
      busyFor(1);
    } finally {
      leave();
    }
  });
  await Promise.all(all);
  ticking = false;
  assert.deepEqual(order, Array.from({ length: 40 }, (_, i) => i));
  const perTurn = new Map<number, number>();
  for (const t of turnOf) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
  // Budget 4 ms + one preparation: at most ~5 of the 1 ms preparations share a turn.
  assert.ok(Math.max(...perTurn.values()) <= 6, JSON.stringify([...perTurn]));
  assert.ok(perTurn.size >= 7, `spread over ${perTurn.size} turns`);
});

test('a lone request passes at once, and leave() is idempotent', async () => {
  await new Promise((r) => setImmediate(r)); // a fresh turn: the burst above spent its budget
  await new Promise((r) => setImmediate(r));
  const leave = enterTurn();
  assert.equal(typeof leave, 'function');
  (leave as () => void)();
  (leave as () => void)();
});
