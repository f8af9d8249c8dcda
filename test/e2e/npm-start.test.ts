/**
 * The README's `npm start`: SIGTERM to npm (what a supervisor or `kill` sends) reaches the
 * server, which shuts down gracefully; the node process is not left behind listening.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';

/** Whether process `pid` is alive (signal 0 probes without sending). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `npm start` on an ephemeral port; resolves once the server's listening line is read. */
async function startNpm(): Promise<{ npm: ReturnType<typeof spawn>; serverPid: number; out: () => string }> {
  const npm = spawn('npm', ['start', '--silent'], { env: { ...process.env, PORT: '0', OPENLORA_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const serverPid = await new Promise<number>((resolve, reject) => {
    npm.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      for (const line of out.split('\n')) {
        if (line.includes('"event":"listening"')) resolve((JSON.parse(line) as { pid: number }).pid);
      }
    });
    npm.on('exit', (code) => reject(new Error(`npm start exited (${code}) before listening: ${out.slice(-2000)}`)));
  });
  assert.ok(alive(serverPid));
  return { npm, serverPid, out: () => out };
}

test('SIGTERM to `npm start` stops the server (no orphaned node process)', { timeout: 60_000 }, async () => {
  const { npm, serverPid, out } = await startNpm();
  npm.kill('SIGTERM');
  await once(npm, 'exit');
  for (let i = 0; i < 100 && alive(serverPid); i++) await new Promise((r) => setTimeout(r, 100));
  const left = alive(serverPid);
  if (left) process.kill(serverPid, 'SIGKILL');
  assert.equal(left, false, 'the server process outlived npm');
  // NOTE(why): the server writes into the pipe itself; its last lines can still be unread when
  // npm's 'exit' fires. Once it is gone the pipe has no writer left and closes after them.
  if (!npm.stdout!.closed) await once(npm.stdout!, 'close');
  assert.match(out(), /"event":"stopped"/);
});

test("a terminal's Ctrl-C (SIGINT to the server and to npm, which forwards it) still shuts down gracefully", { timeout: 60_000 }, async () => {
  const { npm, serverPid, out } = await startNpm();
  process.kill(serverPid, 'SIGINT');  // the process group's copy
  npm.kill('SIGINT');  // npm forwards its own: the server sees two
  await once(npm, 'exit');
  for (let i = 0; i < 100 && alive(serverPid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(serverPid)) process.kill(serverPid, 'SIGKILL');
  if (!npm.stdout!.closed) await once(npm.stdout!, 'close');
  assert.match(out(), /"event":"shutdown","signal":"SIGINT"/);
  assert.match(out(), /"event":"stopped"/, 'the second signal did not cut the shutdown short');
});
