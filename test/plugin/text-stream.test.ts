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
