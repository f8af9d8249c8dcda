/**
 * A mixed batch on the demo model: 16 concurrent streams, a quarter of them constrained
 * (json_schema), over different adapters. Every constrained output validates; every
 * unconstrained output equals the same request run alone.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RunningServer } from '../../examples/server.ts';
import { startDemo } from '../e2e/server.ts';
import { post } from '../gateway/helpers.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo();
});
after(async () => {
  await srv?.close();
});

const SCHEMA = {
  type: 'object',
  properties: { who: { type: 'string', maxLength: 8 }, act: { type: 'integer', minimum: 1, maximum: 5 }, lines: { type: 'array', items: { enum: ['ay', 'nay'] }, maxItems: 3 } },
  required: ['who', 'act', 'lines'],
  additionalProperties: false,
};
const MODELS = ['tiny-shakespeare', 'tiny-shakespeare:shout', 'tiny-shakespeare:whisper', 'tiny-shakespeare:romeo'];

/** POST a streamed chat completion and return its text and finish reason. */
async function streamText(body: Record<string, unknown>): Promise<{ text: string; finish: string }> {
  const res = await post(srv.url + '/chat/completions', { ...body, stream: true });
  const raw = res.text;
  assert.equal(res.status, 200, raw);
  let text = '';
  let finish = '';
  for (const line of raw.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const c = JSON.parse(line.slice(6)).choices[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  return { text, finish };
}

test('16 streams, 4 constrained, 4 adapters: constrained valid, unconstrained equal to alone', async () => {
  const validate = new Ajv2020().compile(SCHEMA);
  const requests = Array.from({ length: 16 }, (_, i) => ({
    model: MODELS[i % 4],
    messages: [{ role: 'user', content: `Scene ${i}: who speaks?` }],
    max_tokens: 40,
    temperature: 0.9,
    seed: 100 + i,
    ...(i % 4 === 1 ? { response_format: { type: 'json_schema', json_schema: { name: 'line', schema: SCHEMA } }, max_tokens: 120 } : {}),
  }));
  const alone: Array<{ text: string; finish: string } | undefined> = [];
  for (const [i, r] of requests.entries()) if (!('response_format' in r)) alone[i] = await streamText(r);
  const together = await Promise.all(requests.map((r) => streamText(r)));
  for (const [i, r] of requests.entries()) {
    if ('response_format' in r) {
      assert.equal(together[i]!.finish, 'stop', `request ${i}: ${together[i]!.text}`);
      assert.ok(validate(JSON.parse(together[i]!.text)), `request ${i}: ${together[i]!.text}`);
    } else {
      assert.deepEqual(together[i], alone[i], `request ${i} (${r.model}) differs from running alone`);
    }
  }
});
