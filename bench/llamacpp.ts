/**
 * The llama.cpp baseline from bench/run.ts: installs node-llama-cpp into bench/llamacpp/ on
 * demand (its own package.json + package-lock.json; the prebuilt linux-x64 CPU binary comes
 * inside the npm package, nothing is downloaded at run time) and runs one measurement per
 * child process (bench/llamacpp/baseline.ts), so llama.cpp's threads and memory never mix
 * with the openlora server's.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LlamaJob, LlamaResult } from './llamacpp/baseline.ts';

export type { LlamaJob, LlamaResult };

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'llamacpp');

/** Whether node-llama-cpp and its linux-x64 binary are installed in bench/llamacpp/. */
export function llamaCppInstalled(): boolean {
  return existsSync(path.join(DIR, 'node_modules/node-llama-cpp/package.json'));
}

/**
 * `npm ci` in bench/llamacpp (optional GPU builds omitted; NODE_LLAMA_CPP_SKIP_DOWNLOAD keeps
 * its postinstall from fetching or building anything). Same as `npm run bench:install-llamacpp`.
 * @returns an error text, or undefined on success.
 */
export function installLlamaCpp(): string | undefined {
  const r = spawnSync('npm', ['ci', '--omit=optional', '--no-audit', '--no-fund'], {
    cwd: DIR,
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) return `npm ci in ${DIR} failed (status ${r.status ?? r.signal})`;
  return llamaCppInstalled() ? undefined : 'node-llama-cpp missing after npm ci';
}

/** Run one llama.cpp measurement in a child process. Rejects with its stderr tail. */
export async function runLlamaJob(job: LlamaJob, timeoutMs: number): Promise<LlamaResult> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'openlora-llamacpp-'));
  const jobFile = path.join(tmp, 'job.json');
  writeFileSync(jobFile, JSON.stringify(job));
  try {
    return await new Promise<LlamaResult>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(DIR, 'baseline.ts'), jobFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const line = out.split('\n').find((l) => l.startsWith('@@RESULT '));
        if (code === 0 && line) resolve(JSON.parse(line.slice(9)) as LlamaResult);
        else reject(new Error(`llama.cpp ${job.mode} (threads ${job.threads}) ${signal ? `killed (${signal}, time bound ${timeoutMs / 1000} s)` : `exited ${code}`}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      });
    });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
