/**
 * Graceful shutdown of `node --import tsx examples/server.ts` (PORT=0): it prints a JSON log
 * line with its URL; on SIGTERM it stops accepting, lets a short stream finish, cuts a long
 * one (and a long prompt scoring, answered 503) after `shutdownGraceMs`, frees the engine and
 * exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../config/load.ts';

async function readAll(res: Response): Promise<string> {
  return await res.text().catch((e: Error) => `(cut: ${e.message})`);
}

test('SIGTERM: stop accepting, finish or cut streams within shutdownGraceMs, exit 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'openlora-shutdown-'));
  const cfg = join(dir, 'config.json');
  // maxNumSeqs 128: the scoring request's 48 prompts and the streams' 33 choices are admitted together.
  writeFileSync(cfg, JSON.stringify({ shutdownGraceMs: 600, engine: { threads: 1, maxNumSeqs: 128 }, logLevel: 'info' }));
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/server.ts', '--config', cfg], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (l) => {
      lines.push(l);
      try {
        const j = JSON.parse(l) as { event?: string; url?: string };
        if (j.event === 'listening' && j.url) resolve(j.url);
      } catch {
        /* not JSON */
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code} before listening`)));
    setTimeout(() => reject(new Error('server did not start')), 60_000).unref();
  });
  const stream = (maxTokens: number | undefined, n = 1) =>
    fetch(`${url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-shakespeare:shout',
        messages: [{ role: 'user', content: 'Tell a long tale.' }],
        max_tokens: maxTokens,
        n,
        logit_bias: { '1020': -100, '1023': -100 },
        stream: true,
      }),
    });
  // NOTE(why): the long streams must outlast the 600 ms grace on any CPU: 2 x 16 choices of up to
  // 508 tokens (no max_tokens: the rest of the context) are ~16k tokens, several seconds on one thread.
  // A prompt-scoring request (echo + logprobs) of 48 x 500 tokens, seconds of work on one thread:
  // cut at the grace like the streams, answered 503 (its scoring cancelled, not waited for).
  const scoring = fetch(`${url}/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'tiny-shakespeare',
      prompt: Array.from({ length: 48 }, (_, p) => Array.from({ length: 500 }, (_, i) => 1 + ((p * 7 + i * 13) % 1000))),
      echo: true,
      logprobs: 1,
      max_tokens: 0,
    }),
  });
  // In flight (admitted, scoring) before anything else: a request still being read at SIGTERM is only reset.
  for (let i = 0; i < 500; i++) {
    const m = await (await fetch(`${url.replace(/\/v1$/, '')}/metrics`)).text();
    if (/^openlora_running_requests\{[^}]*\} [1-9]/m.test(m)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const [short, long, long2] = await Promise.all([stream(6), stream(undefined, 16), stream(undefined, 16)]);
  const t0 = Date.now();
  child.kill('SIGTERM');
  const [shortText, longText, longText2] = await Promise.all([readAll(short), readAll(long), readAll(long2)]);
  const scored = await scoring;
  const scoredBody = await scored.text();
  assert.equal(scored.status, 503, scoredBody);
  assert.match(scoredBody, /shutting down/);
  const code = await exited;
  const took = Date.now() - t0;
  assert.equal(code, 0, lines.join('\n'));
  assert.match(shortText, /data: \[DONE\]/, 'the short stream finished');
  // a cut stream ends with an error event and then [DONE] (vLLM's framing)
  assert.match(longText, /data: \{"error":[^\n]*\n\ndata: \[DONE\]\n\n$/, 'the long stream was cut');
  assert.match(longText2, /data: \{"error":[^\n]*\n\ndata: \[DONE\]\n\n$/, 'the second long stream was cut');
  assert.match(longText, /shutting down|cut/);
  assert.ok(took < 15_000, `shutdown took ${took} ms`);
  await assert.rejects(fetch(`${url}/models`), 'no longer accepting');
  assert.ok(lines.some((l) => l.includes('"event":"stopped"')));
});
