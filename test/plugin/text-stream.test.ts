import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IncrementalDetokenizer } from '../../plugin/detokenizer.ts';
import { StopMatcher } from '../../plugin/stop.ts';
import { demoTokenizer } from './fakes.ts';

test('detokenizer never splits a multi-byte character', async () => {
  const tok = await demoTokenizer();
  const ids = tok.encode('hi 😀 é ok', false);
  assert.deepEqual(ids.slice(3, 7), [240, 159, 152, 128]);
  const d = new IncrementalDetokenizer(tok, tok.encode('ROMEO:', true));
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  assert.deepEqual(pieces.slice(3, 7), ['', '', '', '😀']);
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'), JSON.stringify(p));
  assert.equal(pieces.join(''), 'hi 😀 é ok');
});

test('detokenizer skips special tokens and matches a full decode over long text', async () => {
  const tok = await demoTokenizer();
  const text = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. ñ — “quoted” 日本 🎭\n'.repeat(4);
  const ids = [...tok.encode(text, false), 1023];
  const d = new IncrementalDetokenizer(tok);
  let out = '';
  for (const id of ids) out += d.push(id);
  out += d.flush();
  assert.equal(out, text);
});

test('an incomplete character at the end is flushed as U+FFFD', async () => {
  const tok = await demoTokenizer();
  const d = new IncrementalDetokenizer(tok);
  assert.equal(d.push(104), 'h');
  assert.equal(d.push(240), '');
  assert.equal(d.push(159), '');
  assert.equal(d.flush(), '\uFFFD');
  assert.equal(d.flush(), '');
});

test('stop strings match across pieces and hold back only a possible prefix', () => {
  const m = new StopMatcher(['t, wh', 'XYZ']);
  assert.deepEqual(m.push('But sof'), { text: 'But sof', stopped: false });
  assert.deepEqual(m.push('t'), { text: '', stopped: false });
  assert.deepEqual(m.push(','), { text: '', stopped: false });
  assert.deepEqual(m.push(' what'), { text: '', stopped: true });
  assert.equal(m.stopped, true);
  assert.deepEqual(m.push('more'), { text: '', stopped: true });
  assert.equal(m.flush(), '');
});

test('stop matcher releases held text that turns out not to match', () => {
  const m = new StopMatcher(['abc']);
  assert.deepEqual(m.push('xa'), { text: 'x', stopped: false });
  assert.deepEqual(m.push('b'), { text: '', stopped: false });
  assert.deepEqual(m.push('d'), { text: 'abd', stopped: false });
  assert.deepEqual(m.push('ab'), { text: '', stopped: false });
  assert.equal(m.flush(), 'ab');
});

test('stop matcher cuts at the earliest of several matches in one piece', () => {
  const m = new StopMatcher(['cd', 'b']);
  assert.deepEqual(m.push('abcd'), { text: 'a', stopped: true });
  const none = new StopMatcher(['', '']);
  assert.deepEqual(none.push('text'), { text: 'text', stopped: false });
  const overlap = new StopMatcher(['aab']);
  assert.deepEqual(overlap.push('aa'), { text: '', stopped: false });
  assert.deepEqual(overlap.push('a'), { text: 'a', stopped: false });
  assert.deepEqual(overlap.push('b!'), { text: '', stopped: true });
});

test('byte-level fast path: streamed text equals the windowed path and a full decode', async () => {
  const tok = await demoTokenizer();
  assert.ok(tok.streamBytes, 'the demo tokenizer is byte-level: the O(1) path is used');
  const windowed = { decode: (ids: number[]) => tok.decode(ids) }; // no streamBytes: the generic path
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let trial = 0; trial < 300; trial++) {
    // Half raw byte tokens (0..255: split characters, invalid sequences), half any id (specials too).
    const ids = Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => Math.floor(rnd() * (rnd() < 0.5 ? 256 : tok.vocabSize)));
    const fast = new IncrementalDetokenizer(tok, [1019, 84]);
    let out = '';
    for (const id of ids) out += fast.push(id);
    out += fast.flush();
    assert.equal(out, tok.decode(ids), JSON.stringify(ids));
  }
  // Valid text: both paths give the same pieces, token by token.
  const ids = tok.encode('Now is the winter 😀 of our “discontent” ñ\n', false);
  const a = new IncrementalDetokenizer(tok);
  const b = new IncrementalDetokenizer(windowed);
  assert.deepEqual([...ids.map((id) => a.push(id)), a.flush()], [...ids.map((id) => b.push(id)), b.flush()]);
  // A byte-order mark in the output is text, not stripped.
  const bom = new IncrementalDetokenizer(tok);
  assert.equal([0xef, 0xbb, 0xbf, 104].map((id) => bom.push(id)).join('') + bom.flush(), '\uFEFFh');
});

test('stop matcher with includeStop ends the text after the earliest match, held prefix included', () => {
  const m = new StopMatcher(['t, wh', 'XYZ'], true);
  assert.deepEqual(m.push('But sof'), { text: 'But sof', stopped: false });
  assert.deepEqual(m.push('t, w'), { text: '', stopped: false });
  assert.deepEqual(m.push('hat'), { text: 't, wh', stopped: true });
  const tie = new StopMatcher(['ab', 'abc'], true);
  assert.deepEqual(tie.push('xabcd'), { text: 'xab', stopped: true });
});
