/**
 * SseWriter (plugin/sse.ts) on a real socket: chunks written by several callbacks of one
 * event-loop turn leave in one socket write, each event stays intact and in order, and a kept-alive connection serves the next
 * request normally after a stream ended (the writer never leaves the socket corked), and a
 * client that never reads its stream is cut once its unread bytes pass the limit.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import express from 'express';

import { SseWriter } from '../../plugin/sse.ts';

let server: http.Server;
let base: string;
let burstWrites = -1; // socket writes (_write/_writev calls) the last /burst response made
let flood: { written: number; overflowed: boolean; cutReason: unknown } | undefined; // how /flood ended
let stall: { overflowed: boolean; cutReason: unknown } | undefined; // how /stall ended
let trickle: { overflowed: boolean; cutReason: unknown } | undefined; // how /trickle ended

before(async () => {
  const app = express();
  app.get('/burst', (_req, res) => {
    // Count the socket's writes for this response (net.Socket's stream methods).
    const sock = res.socket as unknown as Record<'_write' | '_writev', (...a: unknown[]) => unknown>;
    const orig = { _write: sock._write, _writev: sock._writev };
    let writes = 0;
    let later: (() => void) | undefined; // the last turn, run once the burst has been written
    for (const k of ['_write', '_writev'] as const) {
      sock[k] = function (this: unknown, ...a: unknown[]) {
        writes++;
        const r = orig[k].apply(this, a);
        if (writes === 2 && later) setImmediate(later); // headers, then the burst: now a later turn
        return r;
      };
    }
    res.on('finish', () => {
      burstWrites = writes;
      Object.assign(sock, orig);
    });
    const sse = new SseWriter(res);
    // Three callbacks of one loop turn (as the engine's queued step batches are delivered), then
    // a later turn that also ends the stream.
    setImmediate(() => {
      sse.send({ i: 0 });
      sse.send({ i: 1 });
    });
    setImmediate(() => sse.send({ i: 2 }));
    setImmediate(() => sse.send({ i: 3 }));
    // NOTE(why): not a timer: on a loaded machine a 20 ms timer could fire before the burst's
    // uncork and share its write (2 writes instead of 3).
    later = () => {
      later = undefined;
      sse.send({ i: 4 });
      sse.send({ i: 5 });
      sse.done();
    };
  });
  app.get('/flood', (_req, res) => {
    // A stream that keeps writing (the engine does not wait for readers) to a client that never reads.
    const sse = new SseWriter(res, { maxUnsentBytes: 256 * 1024 });
    const chunk = { text: 'x'.repeat(1000) };
    let written = 0;
    const more = () => {
      if (sse.closed || written > 512 * 1024 * 1024) {
        flood = { written, overflowed: sse.overflowed, cutReason: res.locals.cutReason };
        return;
      }
      for (let i = 0; i < 64; i++) sse.send(chunk);
      written += 64 * 1000;
      setImmediate(more);
    };
    more();
  });
  app.get('/trickle', (_req, res) => {
    // A stream still producing (64 kB every 10 ms, under maxUnsentBytes for a long while) to a client that never reads.
    const sse = new SseWriter(res, { maxUnsentBytes: 1024 ** 3, stallBytes: 64 * 1024, stallMs: 300 });
    const chunk = { text: 'x'.repeat(1000) };
    const t0 = Date.now();
    const tick = setInterval(() => {
      if (sse.closed || Date.now() - t0 > 15_000) {
        clearInterval(tick);
        trickle = { overflowed: sse.overflowed, cutReason: res.locals.cutReason };
        return;
      }
      for (let i = 0; i < 64; i++) sse.send(chunk);
    }, 10);
  });
  app.get('/stall', (_req, res) => {
    // A finished stream (~24 MB, more than the socket buffers hold) whose client never reads.
    const sse = new SseWriter(res, { maxUnsentBytes: 1024 ** 3, stallBytes: 64 * 1024, stallMs: 300 });
    const chunk = { text: 'x'.repeat(1000) };
    for (let i = 0; i < 24_000; i++) sse.send(chunk);
    sse.done();
    res.on('close', () => (stall = { overflowed: sse.overflowed, cutReason: res.locals.cutReason }));
  });
  app.get('/fail', (_req, res) => {
    const sse = new SseWriter(res);
    sse.send({ i: 0 });
    sse.error(new Error('boom'));
  });
  app.get('/plain', (_req, res) => {
    res.json({ ok: true });
  });
  server = http.createServer(app);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => server.close());

/** GET path on `agent`; resolves with the body chunks as they arrived. */
function get(path: string, agent: http.Agent): Promise<{ chunks: string[]; socket: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.get(base + path, { agent }, (res) => {
      const chunks: string[] = [];
      res.setEncoding('utf8');
      res.on('data', (c: string) => chunks.push(c));
      res.on('end', () => resolve({ chunks, socket: req.socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test('events of one turn share a socket write; order and framing are kept; the kept-alive socket serves the next request', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await get('/burst', agent);
    const body = first.chunks.join('');
    const events = body.split('\n\n').filter(Boolean);
    assert.deepEqual(events, [0, 1, 2, 3, 4, 5].map((i) => `data: {"i":${i}}`).concat('data: [DONE]'));
    // Headers, then one write per loop turn (the second carries the end): 3 writes. Node alone
    // flushes after every callback: headers + 3 + 1.
    assert.equal(burstWrites, 3);
    const failed = await get('/fail', agent);
    assert.match(failed.chunks.join(''), /^data: \{"i":0\}\n\ndata: \{"error":\{"message":[^\n]*\}\n\ndata: \[DONE\]\n\n$/);
    const plain = await Promise.race([
      get('/plain', agent),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('kept-alive socket stalled')), 5000).unref()),
    ]);
    assert.equal(plain.chunks.join(''), '{"ok":true}');
    assert.equal(plain.socket, first.socket, 'the same kept-alive connection');
  } finally {
    agent.destroy();
  }
});

/** GET `path` on a raw socket that never reads its response, until `ended()` (at most 20 s). */
async function requestNeverRead(path: string, ended: () => boolean): Promise<void> {
  const { port } = server.address() as AddressInfo;
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.pause();
  sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const t0 = Date.now();
  while (!ended() && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
  sock.destroy();
}

test('a client that never reads its stream is cut past maxUnsentBytes (the server stops holding its chunks)', async () => {
  await requestNeverRead('/flood', () => flood !== undefined);
  assert.ok(flood, 'the flood route ended');
  assert.equal(flood.overflowed, true, `cut after ${flood.written} bytes`);
  assert.match(String(flood.cutReason), /unread \(limit 262144\)/);
  assert.ok(flood.written < 256 * 1024 * 1024, `written ${flood.written}`);
});

test('a client that reads nothing of a stream for stallMs is cut, even under maxUnsentBytes and after the stream ended', async () => {
  await requestNeverRead('/stall', () => stall !== undefined);
  assert.ok(stall, 'the server closed the stalled response');
  assert.equal(stall.overflowed, true);
  assert.match(String(stall.cutReason), /read none of its stream's last \d+ unsent bytes for 300 ms/);
});

test('a stream still producing to a client that reads nothing is cut after stallMs (not only once it ended)', async () => {
  await requestNeverRead('/trickle', () => trickle !== undefined);
  assert.ok(trickle, 'the route ended');
  assert.equal(trickle.overflowed, true, 'cut while producing, before the 15 s the route gives up');
  assert.match(String(trickle.cutReason), /for 300 ms/);
});
