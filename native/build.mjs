#!/usr/bin/env node
/**
 * Build the native addon: build/Release/openlora.node.
 *
 * 1. If a CUDA toolkit is found (`$CUDA_HOME/bin/nvcc`, else `/usr/local/cuda/bin/nvcc`; never
 *    `which nvcc`, which may be a wrapper) and `OPENLORA_NO_CUDA` is not set, compile the CUDA
 *    sources of native/sources.json (cudaKernels + cudaBackend) for its cudaArchitectures into
 *    build/cuda/libopenlora_cuda.a.
 * 2. Run node-gyp (npm's copy) configure + build on binding.gyp, with OPENLORA_CUDA_HOME set when
 *    step 1 ran, so the addon links the CUDA library and cudart_static.
 *
 * Run by `npm ci` / `npm install` (the package's `install` script) or `npm run build:native`.
 * Environment: OPENLORA_NO_CUDA=1 forces a CPU-only build; CUDA_HOME picks the toolkit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, accessSync, constants } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The one list of native sources and CUDA architectures (also read by binding.gyp and CMake). */
const sources = JSON.parse(readFileSync(join(root, 'native', 'sources.json'), 'utf8'));
const cudaOut = join(root, 'build', 'cuda');
const started = Date.now();

function log(msg) {
  process.stderr.write(`[openlora build] ${msg}\n`);
}

function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
}

function isExecutable(p) {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The CUDA toolkit root, or null. PATH-independent on purpose. */
function findCuda() {
  const off = process.env.OPENLORA_NO_CUDA;
  if (off && off !== '0' && off !== 'false') {
    log('OPENLORA_NO_CUDA is set: CPU-only build');
    return null;
  }
  const candidates = [];
  if (process.env.CUDA_HOME) candidates.push(process.env.CUDA_HOME);
  candidates.push('/usr/local/cuda');
  for (const home of candidates) {
    if (isExecutable(join(home, 'bin', 'nvcc')) && existsSync(join(home, 'lib64', 'libcudart_static.a'))) return home;
  }
  log(`no CUDA toolkit (looked for nvcc and lib64/libcudart_static.a under ${candidates.join(', ')}): CPU-only build`);
  return null;
}

/** Compile the CUDA sources in parallel (one nvcc per core) and archive them. */
async function buildCuda(home) {
  const nvcc = join(home, 'bin', 'nvcc');
  rmSync(cudaOut, { recursive: true, force: true });
  mkdirSync(cudaOut, { recursive: true });
  const cudaSources = [...sources.cudaKernels, ...sources.cudaBackend];
  const arch = sources.cudaArchitectures.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
  const compile = (src) =>
    new Promise((ok, fail) => {
      const obj = join(cudaOut, src.replace(/^.*\//, '').replace(/\.cu$/, '.o'));
      const args = ['-c', join(root, src), '-o', obj, '-std=c++17', '-O3', '-Xcompiler', '-fPIC', '-Werror', 'all-warnings', ...arch];
      const p = spawn(nvcc, args, { cwd: root, stdio: 'inherit' });
      p.on('error', fail);
      p.on('exit', (code) => (code === 0 ? ok(obj) : fail(new Error(`nvcc ${src} exited with ${code}`))));
    });
  // One nvcc per core: each file's three gencode passes run in sequence inside nvcc.
  const objects = [];
  const width = Math.max(1, cpus().length);
  for (let i = 0; i < cudaSources.length; i += width) objects.push(...(await Promise.all(cudaSources.slice(i, i + width).map(compile))));
  run('ar', ['rcs', join(cudaOut, 'libopenlora_cuda.a'), ...objects]);
  const archs = sources.cudaArchitectures.map((a) => `sm_${a}`).join(', ');
  log(`CUDA: compiled ${cudaSources.length} files for ${archs} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

/** node-gyp's CLI: npm's own copy when run by npm, else the global npm's. */
function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const r = spawnSync('npm', ['root', '-g'], { encoding: 'utf8' });
  const p = join((r.stdout || '').trim(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (r.status === 0 && existsSync(p)) return p;
  throw new Error('node-gyp not found: run through npm (npm run build:native) or install npm globally');
}

/** --nodedir when npm is configured with one (needed when node-gyp runs outside npm). */
function nodedirArgs() {
  let dir = process.env.npm_config_nodedir;
  if (!dir) {
    const r = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
    dir = r.status === 0 ? r.stdout.trim() : '';
  }
  return dir && dir !== 'undefined' && dir !== 'null' ? [`--nodedir=${dir}`] : [];
}

async function main() {
  const cuda = findCuda();
  if (cuda) await buildCuda(cuda);
  const gyp = nodeGyp();
  const env = { ...process.env, OPENLORA_CUDA_HOME: cuda ?? '' };
  const common = nodedirArgs();
  run(process.execPath, [gyp, 'configure', ...common], env);
  run(process.execPath, [gyp, 'build', `--jobs=${Math.max(1, cpus().length)}`, ...common], env);
  log(`built build/Release/openlora.node (${cuda ? 'CPU + CUDA' : 'CPU only'}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err) => {
  log(`FAILED: ${err.message}`);
  process.exit(1);
});
