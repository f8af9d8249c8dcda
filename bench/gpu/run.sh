#!/usr/bin/env bash
# One-shot GPU (or CPU) check and benchmark of openlora's native engine, issue 6.
#
#   bench/gpu/run.sh          # on a GPU machine: cmake Release build with CUDA, ~8 minutes on an H200
#   bench/gpu/run.sh --cpu    # here: CPU backend, scaled-down shapes, a couple of minutes
#
# Steps (each logs to the same file; a failed step is recorded and the script goes on):
#   1. cmake build (build/cmake-run) of openlora_core, openlora_cuda (when nvcc), openlora-cli
#   2. kernel_checks (test/native/cuda via `npm run test:cuda`) — skipped with a message without a GPU
#   3. openlora-cli check: the demo model vs test/fixtures reference.json (cpu 1e-3; cuda bf16 0.2)
#   4. openlora-cli crosscheck: random Llama-3-8B-shape model (2 layers on the GPU run, to keep
#      the float32 CPU reference quick; a scaled-down shape with --cpu) vs the CPU float32 forward
#   4b. openlora-cli crosscheck of the Gemma 2, Gemma 3 and Qwen3 family fixtures (bench/gpu/family-model.ts)
#   5. openlora-cli roofline + bench: decode tok/s at batch 1,16,64,128 x 0,16,128 rank-16
#      adapters, prefill tok/s, adapter upload time, ratio to weights / copy bandwidth
#   6. bench/gpu/hf_baseline.py: transformers + PEFT on the same shapes, where they import
# Output: bench/results/gpu-<date>/ (cpu-<date> with --cpu): *.json, run.log, summary.txt.
# Env: OUT_DIR overrides the folder; JOBS the build parallelism; STEPS / STEPS_CPU the decode steps.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT_DIR:-$ROOT/bench/results/$MODE-$STAMP}
mkdir -p "$OUT"
LOG=$OUT/run.log
SUMMARY=$OUT/summary.txt
JOBS=${JOBS:-$(nproc)}
: > "$SUMMARY"
T0=$(date +%s)

log() { echo "[run.sh +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
# step NAME CMD...: run, tee into the log, record rc in the summary (3 = SKIP: backend unavailable).
step() {
  local name=$1; shift
  log "== $name: $*"
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local verdict=PASS
  [ "$rc" = 1 ] && verdict=FAIL
  [ "$rc" = 3 ] && verdict=SKIP
  [ "$rc" -ge 2 ] && [ "$rc" != 3 ] && verdict="ERROR(rc=$rc)"
  echo "$name: $verdict" | tee -a "$SUMMARY" >> "$LOG"
  return 0
}

log "mode $MODE, output $OUT"
{ uname -a; nproc; (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"); } >> "$LOG" 2>&1

# --- 1. build ------------------------------------------------------------------------------------
BUILD=$ROOT/build/cmake-run-$MODE
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release)
[ "$MODE" = cpu ] && CMAKE_ARGS+=(-DOPENLORA_NO_CUDA=ON)
log "== build: cmake ${CMAKE_ARGS[*]}"
if ! { cmake -S "$ROOT" -B "$BUILD" "${CMAKE_ARGS[@]}" && cmake --build "$BUILD" -j "$JOBS"; } >> "$LOG" 2>&1; then
  echo "build: FAIL" | tee -a "$SUMMARY"; log "build failed; see $LOG"; exit 1
fi
echo "build: PASS" >> "$SUMMARY"
CLI=$BUILD/openlora-cli
BACKENDS=(cpu)
[ "$MODE" = gpu ] && BACKENDS=(cpu cuda)

# --- 2. kernel checks ----------------------------------------------------------------------------
# test/native/cuda (npm run test:cuda): builds for this GPU and runs; prints SKIP and exits 0 when
# no GPU answers, so the verdict is read from its output.
if [ "$MODE" = gpu ]; then
  step kernel_checks node test/native/cuda/run.mjs
fi

# --- 3. demo model vs reference ------------------------------------------------------------------
for b in "${BACKENDS[@]}"; do
  step "check_$b" "$CLI" check --backend "$b" --model examples/models/tiny-shakespeare --adapters examples/adapters \
    --reference test/fixtures/tiny-shakespeare/reference.json --out "$OUT/check-$b.json"
done

# --- 4. random Llama-3-8B-shape logits vs the CPU float32 forward ---------------------------------
SMALL=(--random-shape 512,4,8,2,1536 --vocab 8192)
if [ "$MODE" = gpu ]; then
  # 2 layers of the 8B shape: the float32 CPU reference stays a few seconds; cpu vs cpu is moot.
  step crosscheck_cuda "$CLI" crosscheck --backend cuda --random-llama3-8b --layers 2 --tokens 8 --out "$OUT/crosscheck-cuda.json"
else
  step crosscheck_cpu "$CLI" crosscheck --backend cpu "${SMALL[@]}" --tokens 8 --out "$OUT/crosscheck-cpu.json"
fi

# --- 4b. model families (issue 17) vs the CPU float32 forward -------------------------------------
# The fixtures whose head_dim the CUDA attention kernels take (32): Gemma 2 (soft-capping, sliding
# window 12, GeGLU, (1+w) and pre/post norms), Gemma 3 (q/k norms, local/global RoPE bases,
# window 10) and Qwen3 (q/k norms); 24 tokens, past every window. cpu vs cpu with --cpu checks the
# command path only.
FAMILY_BACKEND=cpu
[ "$MODE" = gpu ] && FAMILY_BACKEND=cuda
for f in gemma2 gemma3 qwen3; do
  if dir=$(node --import tsx bench/gpu/family-model.ts "$f" 2>>"$LOG"); then
    step "family_${f}_$FAMILY_BACKEND" "$CLI" crosscheck --backend "$FAMILY_BACKEND" --model "$dir" --tokens 24 --tol 5e-2 \
      --out "$OUT/family-$f-$FAMILY_BACKEND.json"
    rm -rf "$dir"
  else
    echo "family_${f}_$FAMILY_BACKEND: FAIL (fixture not materialised)" | tee -a "$SUMMARY" >> "$LOG"
  fi
done

# --- 5. roofline and timing matrix ---------------------------------------------------------------
# NOTE(why): the full 8B shape on the CPU backend would take tens of minutes, so the cpu rows
# always use the scaled-down shape; cuda rows use Llama-3-8B's.
for b in "${BACKENDS[@]}"; do
  if [ "$b" = cuda ]; then SHAPE=(--random-llama3-8b); STEPS=${STEPS:-32}; else SHAPE=("${SMALL[@]}"); STEPS_CPU=${STEPS_CPU:-8}; fi
  step "roofline_$b" "$CLI" roofline --backend "$b" "${SHAPE[@]}" --out "$OUT/roofline-$b.json"
  step "bench_$b" "$CLI" bench --backend "$b" "${SHAPE[@]}" --batch 1,16,64,128 --adapters 0,16,128 --rank 16 \
    --steps "$([ "$b" = cuda ] && echo "$STEPS" || echo "$STEPS_CPU")" --prompt-len 16 --out "$OUT/bench-$b.json"
done

# --- 6. transformers + PEFT baseline -------------------------------------------------------------
if python3 -c 'import torch, transformers, peft' >/dev/null 2>&1; then
  if [ "$MODE" = gpu ]; then HF_ARGS=(--device cuda --shape 4096,32,32,8,14336 --vocab 128256 --steps 16);
  else HF_ARGS=(--device cpu --shape 512,4,8,2,1536 --vocab 8192 --steps 4); fi
  step hf_baseline python3 bench/gpu/hf_baseline.py "${HF_ARGS[@]}" --batch 1,16,64,128 --adapters 0,16,128 --rank 16 \
    --out "$OUT/hf-baseline.json"
else
  log "hf_baseline: SKIP (python3 cannot import torch, transformers and peft here)"; echo "hf_baseline: SKIP (no torch/transformers/peft)" >> "$SUMMARY"
fi

log "done in $(( $(date +%s) - T0 )) s; summary:"
cat "$SUMMARY" | tee -a "$LOG"
# Results are committed: keep them free of this machine's absolute paths.
sed -i "s#$ROOT/##g" "$OUT"/*.json "$LOG" 2>/dev/null || true
