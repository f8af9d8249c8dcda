// The CPU forward over a loaded Model (src/model.h): float32 activations and accumulation (or
// activations rounded to bfloat16 at the products with BF16 weights: Workspace::bf16Activations),
// weights as stored (float32, bfloat16 or int8), KV through the paged cache, batched unmerged
// LoRA through cpu::sgmv, reading the step's StepPlan (src/step_plan.h) as the CUDA forward does.
// makeCpuForward (src/backend.h) wraps it as the "cpu" ForwardBackend.
#pragma once

#include <cstdint>
#include <vector>

#include "../src/batch.h"
#include "../src/model.h"
#include "../src/step_plan.h"
#include "fused_lora.h"
#include "gemm_packed.h"
#include "sgmv.h"
#include "thread_pool.h"

namespace openlora {
namespace cpu {

/** Scratch buffers of the forward pass, reused across steps (engine thread only). */
struct Workspace {
  std::vector<float> x;       // [T, hidden] residual stream
  std::vector<float> xn;      // [T, hidden] normed input of the current block
  std::vector<float> q;       // [T, qDim]
  std::vector<float> k;       // [T, kvDim]
  std::vector<float> v;       // [T, kvDim]
  std::vector<float> attn;    // [T, qDim]
  std::vector<float> proj;    // [T, hidden] o_proj / down_proj output
  std::vector<float> gate;    // [T, intermediate]
  std::vector<float> up;      // [T, intermediate]
  std::vector<float> loraTmp; // [terms, maxRank] LoRA shrink output (cpu::sgmv)
  LoraBatch loraBatches[kMaxFusedProjections];  // the grouped LoRA terms of the modules of one projections() call
  FusedScratch fused;         // base products + LoRA as one job (cpu/fused_lora.h)
  std::vector<float> sel;     // [R, hidden] rows that need logits
  StepPlan plan;              // this step's rows, positions, block tables, RoPE tables, LoRA spans
  // EngineOptions.activationDtype "bfloat16": the base products with BF16 weights (decoder
  // layers and lm_head) round their input to bfloat16 (cpu::gemmPacked); LoRA, attention, norms
  // and the residual stream stay float32. Set once by the backend.
  bool bf16Activations = false;
};

/**
 * One batched forward step over every entry's tokens ([T, hidden] concatenated, T = sum of
 * numTokens). Appends each entry's keys/values to its cache and advances kv->length().
 * @param logits out: [R, vocab] float32, R = sum over entries of (allLogits ? numTokens : 1), in
 *   entry order.
 */
void forward(const Model& model, const std::vector<BatchEntry>& batch, ThreadPool& pool, Workspace& ws,
             std::vector<float>* logits);

}  // namespace cpu
}  // namespace openlora
