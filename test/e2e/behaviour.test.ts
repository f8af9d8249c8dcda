/**
 * Acceptance: fidelity through HTTP and visible adapter styles.
 *
 * Every fixture prompt goes through the real gateway (chat prompts as `messages`, rendered by
 * the model's template; raw prompts as token ids), greedy, and is checked against the
 * independent PyTorch reference; then the styles: `shout` >= 80% upper-case letters,
 * `whisper` >= 95% lower-case letters over 64 greedy tokens per prompt.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from './server.ts';

const ref = JSON.parse(readFileSync(new URL('../fixtures/tiny-shakespeare/reference.json', import.meta.url), 'utf8'));
const ADAPTER_OF: Record<string, string> = { base: '', shout: 'shout', whisper: 'whisper', romeo: 'romeo', rs: 'rs' };

let srv: RunningServer;
before(async () => {
  srv = await startDemo();
});
after(async () => {
  await srv?.close();
});

/** Greedy completion of one fixture prompt; returns the generated text. */
async function greedy(prompt: any, model: string, maxTokens: number): Promise<{ text: string; finish: string }> {
  const r =
    prompt.kind === 'chat'
      ? await postJson(srv.url, '/chat/completions', { model, messages: prompt.messages, temperature: 0, max_tokens: maxTokens })
      : await postJson(srv.url, '/completions', { model, prompt: prompt.input_ids, temperature: 0, max_tokens: maxTokens });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const c = r.body.choices[0];
  return { text: prompt.kind === 'chat' ? c.message.content : c.text, finish: c.finish_reason };
}

test('greedy text over HTTP equals the reference for every prompt and adapter', async (t) => {
  let compared = 0;
  for (const prompt of ref.prompts) {
    for (const [config, adapter] of Object.entries(ADAPTER_OF)) {
      const g = prompt.results[config].greedy;
      // Compare only up to the first near-tie (margin < 1e-3): after it the reference's choice is arbitrary.
      const tieAt = g.steps.findIndex((s: { margin: number }) => s.margin < 1e-3);
      const stop = g.stop_index ?? g.tokens.length;
      if (tieAt !== -1 && tieAt < stop) continue;
      const model = adapter ? `tiny-shakespeare:${adapter}` : 'tiny-shakespeare';
      const out = await greedy(prompt, model, ref.greedy_new_tokens);
      const want: string = g.text_until_stop;
      assert.equal(out.text, want, `${prompt.id} ${config}`);
      assert.equal(out.finish, g.stop_index === null ? 'length' : 'stop', `${prompt.id} ${config} finish_reason`);
      compared++;
    }
  }
  t.diagnostic(`compared ${compared} prompt/adapter pairs`);
  assert.ok(compared >= 24, `compared ${compared} prompt/config pairs`);
});

function letterShares(text: string): { upper: number; lower: number; letters: number } {
  const letters = text.match(/\p{L}/gu) ?? [];
  const upper = letters.filter((c) => c === c.toUpperCase() && c !== c.toLowerCase()).length;
  const lower = letters.filter((c) => c === c.toLowerCase() && c !== c.toUpperCase()).length;
  return { upper, lower, letters: letters.length };
}

for (const [adapter, want] of [
  ['shout', 'upper'],
  ['whisper', 'lower'],
] as const) {
  test(`tiny-shakespeare:${adapter} writes ${want} case (greedy, 64 tokens, every fixture prompt)`, async (t) => {
    let text = '';
    let baseText = '';
    for (const prompt of ref.prompts) {
      text += (await greedy(prompt, `tiny-shakespeare:${adapter}`, 64)).text;
      baseText += (await greedy(prompt, 'tiny-shakespeare', 64)).text;
    }
    const s = letterShares(text);
    const b = letterShares(baseText);
    assert.ok(s.letters > 100, `only ${s.letters} letters generated`);
    if (want === 'upper') {
      assert.ok(s.upper / s.letters >= 0.8, `upper share ${(s.upper / s.letters).toFixed(3)}`);
      assert.ok(b.upper / b.letters < 0.5, `base upper share ${(b.upper / b.letters).toFixed(3)} (the adapter must make the difference)`);
    } else {
      assert.ok(s.lower / s.letters >= 0.95, `lower share ${(s.lower / s.letters).toFixed(3)}`);
      assert.ok(b.lower / b.letters < 0.95, `base lower share ${(b.lower / b.letters).toFixed(3)}`);
    }
    t.diagnostic(`${adapter}: ${s.letters} letters, upper ${(s.upper / s.letters).toFixed(3)}, lower ${(s.lower / s.letters).toFixed(3)}; base upper ${(b.upper / b.letters).toFixed(3)}`);
  });
}
