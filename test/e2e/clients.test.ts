/**
 * Acceptance: the README's examples against a listening gateway: the curl script, the
 * official `openai` SDK (streaming to the end) and LangChain's ChatOpenAI (`invoke`, `stream`).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { RunningServer } from '../../examples/server.ts';
import { streamChat } from '../../examples/openai-sdk.ts';
import { runLangChain } from '../../examples/langchain.ts';
import { startDemo } from './server.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo();
});
after(async () => {
  await srv?.close();
});

function hasCurl(): boolean {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('examples/curl.sh returns a Shakespeare-like chat completion', { skip: hasCurl() ? false : 'curl is not installed' }, async () => {
  const script = fileURLToPath(new URL('../../examples/curl.sh', import.meta.url));
  const { stdout } = await promisify(execFile)('bash', [script, srv.url]);
  const body = JSON.parse(stdout);
  assert.equal(body.object, 'chat.completion');
  assert.equal(body.model, 'tiny-shakespeare:shout');
  const text: string = body.choices[0].message.content;
  assert.match(text, /[A-Z]{2,}/, `expected shouted words, got ${JSON.stringify(text)}`);
  assert.ok(body.usage.completion_tokens > 0);
});

test('the openai SDK streams a chat completion to the end (examples/openai-sdk.ts)', async () => {
  const text = await streamChat(srv.url, 'tiny-shakespeare:whisper');
  assert.ok(text.length > 0, 'empty stream');
  assert.equal(text, text.toLowerCase(), `whisper should write lower case: ${JSON.stringify(text)}`);
});

test('LangChain ChatOpenAI invoke and stream work (examples/langchain.ts)', async () => {
  const { invoked, streamed } = await runLangChain(srv.url, 'tiny-shakespeare:shout');
  assert.ok(invoked.length > 0, 'invoke returned nothing');
  assert.ok(streamed.length > 0, 'stream returned nothing');
  const letters = (invoked + streamed).match(/[A-Za-z]/g) ?? [];
  const upper = letters.filter((c) => c >= 'A' && c <= 'Z').length;
  assert.ok(upper / letters.length > 0.8, `shout via LangChain: ${JSON.stringify(invoked)} / ${JSON.stringify(streamed)}`);
});
