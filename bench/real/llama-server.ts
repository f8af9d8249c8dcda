/**
 * The llama.cpp peer of the real-shape bench: llama-server built from source (bench/real/
 * build-llama.sh, cached outside the repo) on our own GGUF conversion (bench/real/to_gguf.py) of
 * the same random weights and adapters, driven over HTTP like openlora.
 *
 * Layout under the cache dir: `llama.cpp/` (the source of node-llama-cpp 3.22.1's
 * gitRelease.bundle) with `build/bin/llama-server`; `gguf/<model folder name>/base-<type>.gguf`
 * and `lora-<adapter>.gguf` (converted once, reused while the file exists).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Path of the built llama-server under `cacheDir`, or undefined when it is not built. */
export function llamaServerBin(cacheDir: string): string | undefined {
  const bin = path.join(cacheDir, 'llama.cpp', 'build', 'bin', 'llama-server');
  return existsSync(bin) ? bin : undefined;
}

/** Run bench/real/to_gguf.py with the bundle's gguf-py; writes `out` atomically (tmp + rename). */
function toGguf(cacheDir: string, args: string[], out: string): void {
  if (existsSync(out)) return;
  mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.tmp`;
  execFileSync(process.env.PYTHON ?? 'python3', [path.join(HERE, 'to_gguf.py'), ...args, tmp], {
    env: { ...process.env, PYTHONPATH: path.join(cacheDir, 'llama.cpp', 'gguf-py') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  renameSync(tmp, out);
}

/**
 * GGUF files of `modelDir` (type f16 or q8_0) and of each adapter folder in `adapterDirs`
 * (F16), converted on first use.
 * @returns the base file and the adapter files, in `adapterDirs` order.
 */
export function ggufFiles(cacheDir: string, modelDir: string, adapterDirs: string[], type: 'f16' | 'q8_0' = 'f16'): { base: string; loras: string[] } {
  const dir = path.join(cacheDir, 'gguf', path.basename(modelDir));
  const base = path.join(dir, `base-${type}.gguf`);
  toGguf(cacheDir, ['base', '--type', type, modelDir], base);
  const loras = adapterDirs.map((a) => {
    const out = path.join(dir, `lora-${path.basename(a)}.gguf`);
    toGguf(cacheDir, ['lora', modelDir, a], out);
    return out;
  });
  return { base, loras };
}

/** A running llama-server. */
export interface LlamaServer {
  /** Its OpenAI base URL (`http://127.0.0.1:PORT/v1`). */
  url: string;
  child: ChildProcess;
  /** Stop it (SIGTERM, then SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * Start llama-server on `base` with `loras` loaded but not applied (`--lora-init-without-apply`:
 * a request picks its adapters with `lora: [{id, scale}]`), `parallel` slots sharing a context
 * of `parallel * ctxPerSlot` tokens, `threads` threads; resolves once /health answers 200.
 * @throws Error when it exits first or is not healthy within `timeoutMs`.
 */
export async function startLlamaServer(
  bin: string,
  o: { base: string; loras: string[]; port: number; threads: number; parallel: number; ctxPerSlot: number; timeoutMs?: number; log?: string },
): Promise<LlamaServer> {
  const args = [
    '-m', o.base, '--host', '127.0.0.1', '--port', String(o.port), '-t', String(o.threads), '-tb', String(o.threads),
    '-np', String(o.parallel), '-c', String(o.parallel * o.ctxPerSlot), '--no-webui', '--cont-batching',
    ...(o.loras.length ? ['--lora-init-without-apply', ...o.loras.flatMap((l) => ['--lora', l])] : []),
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${o.port}`;
  const deadline = Date.now() + (o.timeoutMs ?? 300_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`llama-server exited (${child.exitCode ?? child.signalCode}):\n${tail}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`llama-server not healthy after ${o.timeoutMs ?? 300_000} ms:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    url: `${url}/v1`,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    },
  };
}
