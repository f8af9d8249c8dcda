/**
 * The Responses API on the scripted engine: the response object, the event stream's order and
 * sequence numbers, the openai SDK reading both, `previous_response_id` (the earlier turn's input
 * and output reach the next prompt), the store (per key, `store: false`, GET / DELETE /
 * input_items), and the 400s that name the Responses field.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { SequenceParams } from '../../native/types.ts';
import { demoTokenizer } from '../plugin/fakes.ts';
import { fakeServer, get, post } from './helpers.ts';

type Srv = Awaited<ReturnType<typeof fakeServer>>;
let srv: Srv;
const A = 'sk-tenant-a-abcdef';
const B = 'sk-tenant-b-abcdef';
const A2 = 'sk-tenant-a-other-abcdef';  // another key under A's name
const prompts: number[][] = [];
let out: number[] = [];

before(async () => {
  const tok = await demoTokenizer();
  out = tok.encode('Good morrow', false);
  srv = await fakeServer(
    (p: SequenceParams) => {
      prompts.push(p.promptIds);
      return out;
    },
    {
      keys: [
        { key: A, name: 'a', models: ['*'], adapters: ['*'], admin: false },
        { key: B, name: 'b', models: ['*'], adapters: ['*'], admin: false },
        { key: A2, name: 'a', models: ['*'], adapters: ['*'], admin: false },
      ],
    },
  );
});
after(async () => {
  await srv?.close();
});

const R = '/v1/responses';
/** An object nested `n` levels deep ({"a": {"a": ...}}). */
const deep = (n: number): Record<string, unknown> => {
  let v: Record<string, unknown> = { type: 'object' };
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
};
const del = async (url: string, key: string) => {
  const res = await fetch(url, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: await res.json() };
};

test('a response: output message with the text, usage, status, the request echoed', async () => {
  const r = await post(srv.url + R, { model: 'tiny', input: 'Hello', instructions: 'Be brief.', max_output_tokens: 50, temperature: 0.5, metadata: { run: '1' } }, A);
  assert.equal(r.status, 200, r.text);
  const b = r.body;
  assert.match(b.id, /^resp_/);
  assert.equal(b.object, 'response');
  assert.equal(b.status, 'completed');
  assert.equal(b.instructions, 'Be brief.');
  assert.equal(b.temperature, 0.5);
  assert.deepEqual(b.metadata, { run: '1' });
  assert.equal(b.output.length, 1);
  const m = b.output[0];
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.match(m.id, /^msg_/);
  assert.deepEqual(m.content, [{ type: 'output_text', text: 'Good morrow', annotations: [], logprobs: [] }]);
  assert.ok(b.usage.output_tokens >= out.length, JSON.stringify(b.usage)); // the script's tokens and its end of sequence
  assert.equal(b.usage.total_tokens, b.usage.input_tokens + b.usage.output_tokens);
  // instructions render as the system turn of the prompt
  const tok = await demoTokenizer();
  assert.match(tok.decode(prompts[prompts.length - 1]!), /Be brief\.[\s\S]*Hello/);
});

test('max_output_tokens cuts: status incomplete with reason max_output_tokens', async () => {
  const r = await post(srv.url + R, { model: 'tiny', input: 'Hello', max_output_tokens: 1 }, A);
  assert.equal(r.body.status, 'incomplete');
  assert.deepEqual(r.body.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(r.body.output[0].status, 'incomplete');
});

test('the stream: named events in OpenAI order, sequence numbers 0.., no [DONE]; the SDK accumulates it', async () => {
  const res = await fetch(srv.url + R, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${A}` },
    body: JSON.stringify({ model: 'tiny', input: 'Hello', stream: true }),
  });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.ok(!text.includes('[DONE]'));
  const events = text
    .trim()
    .split('\n\n')
    .map((block) => {
      const [ev, data] = block.split('\n');
      const payload = JSON.parse(data!.slice('data: '.length));
      assert.equal(ev, `event: ${payload.type}`);
      return payload;
    });
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );
  const types = events.map((e) => e.type);
  const deltas = types.filter((t) => t === 'response.output_text.delta').length;
  assert.ok(deltas >= 1);
  assert.deepEqual(types, [
    'response.created',
    'response.in_progress',
    'response.output_item.added',
    'response.content_part.added',
    ...Array(deltas).fill('response.output_text.delta'),
    'response.output_text.done',
    'response.content_part.done',
    'response.output_item.done',
    'response.completed',
  ]);
  const done = events[events.length - 1].response;
  assert.equal(done.output[0].content[0].text, 'Good morrow');
  assert.equal(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join(''), 'Good morrow');

  const client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: A });
  const stream = client.responses.stream({ model: 'tiny', input: 'Hello' });
  let streamed = '';
  stream.on('response.output_text.delta', (e) => (streamed += e.delta));
  const final = await stream.finalResponse();
  assert.equal(final.output_text, 'Good morrow');
  assert.equal(streamed, 'Good morrow');
  const whole = await client.responses.create({ model: 'tiny', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Hi' }] }] });
  assert.equal(whole.output_text, 'Good morrow');
});

test('previous_response_id continues the stored conversation; GET, input_items and DELETE see only the key that stored it', async () => {
  const tok = await demoTokenizer();
  const first = (await post(srv.url + R, { model: 'tiny', input: 'Who goes there', instructions: 'Speak as a guard.' }, A)).body;
  const second = await post(srv.url + R, { model: 'tiny', input: 'Stand and unfold', previous_response_id: first.id }, A);
  assert.equal(second.status, 200, second.text);
  assert.equal(second.body.previous_response_id, first.id);
  const prompt = tok.decode(prompts[prompts.length - 1]!);
  assert.match(prompt, /Who goes there[\s\S]*Good morrow[\s\S]*Stand and unfold/);
  assert.doesNotMatch(prompt, /Speak as a guard/, 'instructions are not carried over (OpenAI)');

  assert.deepEqual((await get(`${srv.url}${R}/${first.id}`, A)).body, first);
  const items = (await get(`${srv.url}${R}/${second.body.id}/input_items`, A)).body;
  assert.equal(items.object, 'list');
  assert.deepEqual(items.data.map((i: any) => [i.type, i.role, i.content[0].text]), [['message', 'user', 'Stand and unfold']]);

  // another key, also one with the same name: as if it did not exist
  assert.equal((await get(`${srv.url}${R}/${first.id}`, B)).status, 404);
  assert.equal((await get(`${srv.url}${R}/${first.id}/input_items`, A2)).status, 404);
  assert.equal((await del(`${srv.url}${R}/${first.id}`, A2)).status, 404);
  for (const q of ['order=sideways', 'limit=0', 'limit=101', 'limit=x']) {
    const bad = await get(`${srv.url}${R}/${second.body.id}/input_items?${q}`, A);
    assert.equal(bad.status, 400, q);
    assert.equal(bad.body.error.param, q.split('=')[0]);
  }
  const cross = await post(srv.url + R, { model: 'tiny', input: 'x', previous_response_id: first.id }, B);
  assert.equal(cross.status, 400);
  assert.equal(cross.body.error.param, 'previous_response_id');
  assert.equal(cross.body.error.code, 'previous_response_not_found');
  assert.equal((await del(`${srv.url}${R}/${first.id}`, B)).status, 404);

  const gone = await del(`${srv.url}${R}/${first.id}`, A);
  assert.deepEqual(gone.body, { id: first.id, object: 'response', deleted: true });
  assert.equal((await get(`${srv.url}${R}/${first.id}`, A)).status, 404);

  const unstored = (await post(srv.url + R, { model: 'tiny', input: 'x', store: false }, A)).body;
  assert.equal(unstored.store, false);
  assert.equal((await get(`${srv.url}${R}/${unstored.id}`, A)).status, 404);
});

test('function_call and function_call_output items render as a tool turn; pairing errors name the item', async () => {
  const call = { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Oslo"}' };
  const ok = await post(srv.url + R, { model: 'tiny', input: [{ role: 'user', content: 'Weather?' }, call, { type: 'function_call_output', call_id: 'call_1', output: '{"temp":21}' }] }, A);
  assert.equal(ok.status, 200, ok.text);
  const orphan = await post(srv.url + R, { model: 'tiny', input: [{ role: 'user', content: 'x' }, { type: 'function_call_output', call_id: 'nope', output: '1' }] }, A);
  assert.equal(orphan.status, 400);
  assert.equal(orphan.body.error.param, 'input[1].call_id');
  const unanswered = await post(srv.url + R, { model: 'tiny', input: [{ role: 'user', content: 'x' }, call, { role: 'user', content: 'y' }] }, A);
  assert.equal(unanswered.status, 400);
  assert.equal(unanswered.body.error.param, 'input[1]');
  assert.match(unanswered.body.error.message, /call_1/);
});

test('what is not supported is a 400 naming the field', async () => {
  const cases: Array<[object, string]> = [
    [{ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x' }] }] }, 'input[0].content[0].type'],
    [{ input: [{ type: 'web_search_call', id: 'x' }] }, 'input[0].type'],
    [{ input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
    [{ input: 'x', background: true }, 'background'],
    [{ input: 'x', conversation: 'conv_1' }, 'conversation'],
    [{ input: 'x', tool_choice: 'required' }, 'tool_choice'],
    [{ input: 'x', text: { format: { type: 'json_schema', name: 'a b', schema: {} } } }, 'text.format.name'],
    [{ input: [] }, 'input'],
    [{ input: 'x'.repeat(5000) }, 'input'],
    [{ input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
    [{ input: 'x', metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
    [{ input: 'x', text: { format: { type: 'json_schema', name: 'deep', schema: deep(300) } } }, 'text.format.schema'],
    [{ input: 'x', tools: [{ type: 'function', name: 'f', parameters: deep(300) }] }, 'tools[0].parameters'],
    [{ input: 'x', chat_template_kwargs: { messages: [] } }, 'chat_template_kwargs.messages'],
    [{ input: 'x', structured_outputs: { choice: ['a'] }, text: { format: { type: 'json_object' } } }, 'structured_outputs'],
    [{ input: 'x', guided_choice: ['a', 'b'] }, 'guided_choice'],
    [{ input: 'x', chat_template: '{{ messages }}' }, 'chat_template'],
  ];
  for (const [body, param] of cases) {
    const r = await post(srv.url + R, { model: 'tiny', ...body }, A);
    assert.equal(r.status, 400, `${param}: ${r.text}`);
    assert.equal(r.body.error.param, param, r.text);
  }
  assert.equal((await post(srv.url + R, { model: 'tiny:nope', input: 'x' }, A)).status, 404);
  assert.equal((await post(srv.url + R, { model: 'tiny', input: 'x' })).status, 401);
});

/** Start a streaming response with the engine paused; its reader and id once `response.in_progress` arrived. */
async function startPaused(signal?: AbortSignal): Promise<{ reader: ReadableStreamDefaultReader<Uint8Array>; id: string }> {
  srv.engine.paused = true;
  const res = await fetch(srv.url + R, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${A}` },
    body: JSON.stringify({ model: 'tiny', input: 'Hello', stream: true }),
    signal,
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  let seen = '';
  while (!seen.includes('response.in_progress')) seen += new TextDecoder().decode((await reader.read()).value);
  return { reader, id: /"id":"(resp_[0-9a-f]+)"/.exec(seen)![1]! };
}

test('a streaming response is stored from its start: GET reads it in_progress, a follow-up waits for it (400), then completed', async () => {
  const { reader, id } = await startPaused();
  const mid = await get(`${srv.url}${R}/${id}`, A);
  assert.equal(mid.status, 200, mid.text);
  assert.equal(mid.body.status, 'in_progress');
  assert.deepEqual(mid.body.output, []);
  assert.equal((await get(`${srv.url}${R}/${id}`, B)).status, 404, "another key's GET");
  const early = await post(srv.url + R, { model: 'tiny', input: 'And then?', previous_response_id: id }, A);
  assert.equal(early.status, 400, early.text);
  assert.equal(early.body.error.param, 'previous_response_id');
  assert.equal(early.body.error.code, 'previous_response_in_progress');

  srv.engine.resume();
  while (!(await reader.read()).done);
  const end = await get(`${srv.url}${R}/${id}`, A);
  assert.equal(end.body.status, 'completed');
  assert.equal(end.body.output[0].content[0].text, 'Good morrow');
});

test('a streaming response whose client leaves is not kept', async () => {
  const ac = new AbortController();
  const { id } = await startPaused(ac.signal);
  ac.abort();
  srv.engine.resume();
  for (let i = 0; i < 100 && (await get(`${srv.url}${R}/${id}`, A)).status === 200; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await get(`${srv.url}${R}/${id}`, A)).status, 404);
});

test('a streaming response deleted while it runs stays deleted', async () => {
  const { reader, id } = await startPaused();
  assert.equal((await del(`${srv.url}${R}/${id}`, A)).status, 200);
  srv.engine.resume();
  while (!(await reader.read()).done);
  assert.equal((await get(`${srv.url}${R}/${id}`, A)).status, 404);
});
