#!/usr/bin/env node
/**
 * `npm run test:cuda`: build and run the CUDA kernel checks (test/native/cuda/*_checks.cu, one
 * file per kernel family, driven by main.cu) against a naive CPU loop each.
 *
 * Skips with a message and exit 0 where it cannot run: no CUDA toolkit (`$CUDA_HOME/bin/nvcc`,
 * else `/usr/local/cuda/bin/nvcc`), or no GPU answering (a tiny probe, device_probe.cu, is built
 * and run first). Otherwise exits with the checks' status: 0 all pass, 1 a failure.
 *
 *   node test/native/cuda/run.mjs [--quick] [--only FAMILY]   build for this GPU (-arch=native), run
 *   node test/native/cuda/run.mjs --build-only                compile for every architecture of
 *                                                             native/sources.json, run nothing (CI)
 * Sources (checks and kernels) and architectures come from native/sources.json. Output:
 * build/cuda-checks/.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const sources = JSON.parse(readFileSync(join(root, 'native', 'sources.json'), 'utf8'));
const out = join(root, 'build', 'cuda-checks');
const args = process.argv.slice(2);
const buildOnly = args.includes('--build-only');
const passArgs = args.filter((a) => a !== '--build-only');

function say(msg) {
  process.stdout.write(`[test:cuda] ${msg}\n`);
}

/** The toolkit's nvcc, or null. PATH-independent on purpose (ENV.md: `nvcc` may be a wrapper). */
function findNvcc() {
  for (const home of [process.env.CUDA_HOME, '/usr/local/cuda']) {
    if (!home) continue;
    const nvcc = join(home, 'bin', 'nvcc');
    try {
      accessSync(nvcc, constants.X_OK);
      return nvcc;
    } catch {
      /* next */
    }
  }
  return null;
}

function nvccBuild(nvcc, archArgs, files, exe) {
  const r = spawnSync(nvcc, ['-std=c++17', '-O3', '-Werror', 'all-warnings', ...archArgs, '-o', exe, ...files, '-ldl'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) {
    say(`FAIL: nvcc exited with ${r.status ?? r.error?.message} building ${exe}`);
    process.exit(1);
  }
}

const nvcc = findNvcc();
if (!nvcc) {
  say('SKIP: no CUDA toolkit ($CUDA_HOME/bin/nvcc or /usr/local/cuda/bin/nvcc); nothing was checked');
  process.exit(0);
}
mkdirSync(out, { recursive: true });
const checkFiles = [...sources.cudaChecks, ...sources.cudaKernels];
const exe = join(out, 'cuda_checks');

if (buildOnly) {
  const arch = sources.cudaArchitectures.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
  nvccBuild(nvcc, arch, checkFiles, exe);
  say(`built ${exe} for ${sources.cudaArchitectures.map((a) => `sm_${a}`).join(', ')}`);
  process.exit(0);
}

// NOTE(why): probe before building the checks: their build takes minutes, the probe seconds, and
// a machine without a GPU (a CUDA build box, CI) must skip quickly.
const hasDeviceNode = existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl') || existsSync('/dev/dxg');
if (!hasDeviceNode) {
  say('SKIP: no GPU answers (no /dev/nvidia0, /dev/nvidiactl or /dev/dxg); nothing was checked');
  process.exit(0);
}
const probe = join(out, 'device_probe');
nvccBuild(nvcc, ['-arch=native'], ['test/native/cuda/device_probe.cu'], probe);
const p = spawnSync(probe, [], { encoding: 'utf8' });
if (p.status !== 0) {
  say(`SKIP: no GPU answers (${(p.stdout || p.error?.message || '').trim()}); nothing was checked`);
  process.exit(0);
}
say(`device: ${p.stdout.trim()}; building the checks for it`);
nvccBuild(nvcc, ['-arch=native'], checkFiles, exe);
const r = spawnSync(exe, passArgs, { stdio: 'inherit' });
process.exit(r.status === 0 ? 0 : 1);
