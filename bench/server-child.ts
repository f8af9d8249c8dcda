/**
 * The bench's gateway child process (bench/server.ts) from the harness side: fork it with a
 * parsed config, wait for it to listen, measure around scenarios over IPC, stop it.
 * Used by bench/run.ts and bench/real/run.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerMeasure, ServerProbe } from './client.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Fork bench/server.ts with `config`; resolves once it listens. Its measurements come over IPC.
 * @param prof folder for a V8 CPU profile of the child (`--cpu-prof`), written when it exits.
 * @throws Error when the child reports an error or exits before listening.
 */
export async function startServerChild(config: unknown, prof?: string): Promise<{ child: ChildProcess; probe: ServerProbe; url: string }> {
  const execArgv = ['--import', 'tsx', ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(prof)}`] : [])];
  const c = fork(path.join(REPO, 'bench/server.ts'), [], {
    execArgv,
    env: { ...process.env, OPENLORA_BENCH_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = <T>(event: string) =>
    new Promise<T>((resolve, reject) => {
      const onMsg = (m: { event?: string; message?: string }) => {
        if (m.event === event) done(() => resolve(m as T));
        else if (m.event === 'error') done(() => reject(new Error(`bench server: ${m.message}`)));
      };
      const onExit = (code: number | null) => done(() => reject(new Error(`bench server exited (${code}) before "${event}"`)));
      const done = (f: () => void) => {
        c.off('message', onMsg);
        c.off('exit', onExit);
        f();
      };
      c.on('message', onMsg);
      c.once('exit', onExit);
    });
  const { url: u } = await next<{ url: string }>('listening');
  return {
    child: c,
    url: u,
    probe: {
      start: async () => void c.send({ cmd: 'measure-start' }),
      stop: () => {
        const r = next<ServerMeasure>('measure');
        c.send({ cmd: 'measure-stop' });
        return r;
      },
    },
  };
}

/** Stop the server child (it closes the gateway and exits; with --server-cpu-prof it writes the profile). */
export async function stopServerChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.send({ cmd: 'close' });
  const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

