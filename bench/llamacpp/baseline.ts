/**
 * llama.cpp side of the benchmark's baseline (issue 4, acceptance 7), run as a child process
 * by bench/run.ts: `node --import tsx bench/llamacpp/baseline.ts JOB.json` prints one JSON line.
 *
 * Drives llama.cpp through node-llama-cpp (installed in bench/llamacpp/node_modules only, by
 * `npm run bench:install-llamacpp`; never a dependency of openlora) on the GGUF conversion of
 * the very same weights, with prompts given as token ids (the same ids openlora's tokenizer and
 * chat template produce), greedy, a fixed number of new tokens per request:
 *
 * - `single`:   one context with one sequence; requests one after another.
 * - `base-16`:  one context with 16 sequences; 16 workers, each on its own sequence, so
 *               node-llama-cpp batches the 16 sequences into one llama_decode per step.
 * - `mixed-16`: 16 contexts, one sequence each, each with its own LoRA configuration (llama.cpp
 *               applies LoRA per context: different configurations cannot share a decode); the
 *               16 workers run at once and the contexts' decodes share the CPU threads.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface LlamaJob {
  mode: 'single' | 'base-16' | 'mixed-16';
  /** GGUF of the base model. */
  modelPath: string;
  /** For mixed-16: one LoRA configuration per context. */
  loraConfigs?: Array<Array<{ filePath: string; scale: number }>>;
  /** Prompt token ids, cycled by request index. */
  prompts: number[][];
  requests: number;
  maxTokens: number;
  /** Token ids whose logits are set to -inf (the demo's end tokens, as openlora's logit_bias bans them). */
  bannedTokens?: number[];
  /** llama.cpp compute threads per context (and the process-wide maximum). */
  threads: number;
  /** Sequences (streams) at once. */
  concurrency: number;
  /** Stop starting requests, and cut running ones, after this many seconds (figures then cover what ran). */
  timeLimitSeconds?: number;
}

export interface LlamaResult {
  mode: string;
  threads: number;
  concurrency: number;
  requests: number;
  outputTokens: number;
  wallSeconds: number;
  outputTokensPerSec: number;
  requestsPerSec: number;
  ttftMs: { p50: number; p99: number };
  itlMs: { p50: number; p99: number };
  peakRssMB: number;
  /** Generated token ids of the first request per prompt (for a fidelity check by the caller). */
  firstTokens: number[][];
  llamaCppVersion?: string;
  nodeLlamaCppVersion?: string;
  loadSeconds: number;
  /** The time limit cut the run short (llama.cpp's spinning thread pool can crawl on a loaded machine). */
  truncated: boolean;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const HERE = path.dirname(fileURLToPath(import.meta.url));

async function main(job: LlamaJob): Promise<LlamaResult> {
  const entry = path.join(HERE, 'node_modules/node-llama-cpp/dist/index.js');
  // A computed specifier: openlora's typecheck must not need node-llama-cpp installed.
  const nlc: any = await import(pathToFileURL(entry).href);
  const pkg = JSON.parse(readFileSync(path.join(HERE, 'node_modules/node-llama-cpp/package.json'), 'utf8'));
  const t0 = performance.now();
  const llama = await nlc.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, logLevel: 'error', maxThreads: job.threads, progressLogs: false });
  const model = await llama.loadModel({ modelPath: job.modelPath });
  const ctxSize = 64 + Math.max(...job.prompts.map((p) => p.length)) + job.maxTokens;
  const contexts: any[] = [];
  if (job.mode === 'mixed-16') {
    for (const cfg of job.loraConfigs ?? []) {
      contexts.push(await model.createContext({ sequences: 1, contextSize: ctxSize, threads: job.threads, lora: { adapters: cfg } }));
    }
  } else {
    contexts.push(await model.createContext({ sequences: job.mode === 'single' ? 1 : job.concurrency, contextSize: ctxSize, threads: job.threads }));
  }
  const sequences: any[] =
    job.mode === 'mixed-16' ? contexts.map((c) => c.getSequence()) : Array.from({ length: job.mode === 'single' ? 1 : job.concurrency }, () => contexts[0].getSequence());
  const loadSeconds = (performance.now() - t0) / 1000;

  // Greedy with the end tokens banned (as openlora's requests do with logit_bias), and EOG
  // tokens yielded rather than ending the generator, so every request makes maxTokens tokens.
  const bias = new nlc.TokenBias(model.tokenizer);
  for (const id of job.bannedTokens ?? []) bias.set(id, { logit: -Infinity });
  const evalOptions = { temperature: 0, tokenBias: bias, yieldEogToken: true };
  const ttft: number[] = [];
  const itl: number[] = [];
  const firstTokens: number[][] = [];
  let outputTokens = 0;
  let peakRss = process.memoryUsage.rss();
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 50);

  const generate = async (seq: any, i: number, record: boolean) => {
    await seq.clearHistory();
    const prompt = job.prompts[i % job.prompts.length];
    const start = performance.now();
    let last = start;
    const out: number[] = [];
    for await (const tok of seq.evaluate(prompt, evalOptions)) {
      const now = performance.now();
      if (record) (out.length === 0 ? ttft : itl).push(now - last);
      last = now;
      out.push(tok);
      if (out.length >= job.maxTokens) break;
      if (now > stopAt) {
        truncated = true;
        break;
      }
    }
    return out;
  };

  // Warm-up (not measured): a few tokens on every sequence.
  await Promise.all(sequences.map(async (s) => {
    await s.clearHistory();
    let k = 0;
    for await (const _ of s.evaluate(job.prompts[0], { temperature: 0 })) if (++k >= 4) break;
  }));

  let next = 0;
  let done = 0;
  let truncated = false;
  const t1 = performance.now();
  const stopAt = t1 + (job.timeLimitSeconds ?? Infinity) * 1000;
  await Promise.all(
    sequences.map(async (seq) => {
      while (next < job.requests && performance.now() < stopAt) {
        const i = next++;
        const out = await generate(seq, i, true);
        outputTokens += out.length;
        done++;
        if (i < job.prompts.length) firstTokens[i] = out;
      }
    }),
  );
  const wall = (performance.now() - t1) / 1000;
  clearInterval(rssTimer);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  for (const c of contexts) await c.dispose();
  await model.dispose();
  return {
    mode: job.mode,
    threads: job.threads,
    concurrency: sequences.length,
    requests: done,
    outputTokens,
    wallSeconds: wall,
    outputTokensPerSec: outputTokens / wall,
    requestsPerSec: done / wall,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99) },
    itlMs: { p50: percentile(itl, 50), p99: percentile(itl, 99) },
    peakRssMB: peakRss / 2 ** 20,
    firstTokens,
    llamaCppVersion: llama.llamaCppRelease?.release,
    nodeLlamaCppVersion: pkg.version,
    loadSeconds,
    truncated: truncated || done < job.requests,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as LlamaJob;
  main(job).then(
    (r) => {
      process.stdout.write(`@@RESULT ${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (e) => {
      process.stderr.write(`llama.cpp baseline failed: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
