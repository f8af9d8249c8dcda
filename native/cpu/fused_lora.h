// The base products of a layer's projections and their batched LoRA terms as one parallel job.
//
// NOTE(why): a decode step over many distinct adapters reads every adapter's A and B^T once (16
// adapters of ranks 8-64 on the seven modules of a 360M-class model: 521 MB a step) while the
// base products of 16 rows are bound by arithmetic and leave the memory bus mostly idle. Run one
// after the other, the LoRA added ~25% to the step (sgmv at ~30 GB/s from DRAM). Prefetching a
// whole module's adapters during its product (tried before) pushed megabytes through an L2 that
// evicted most of them again, and the thread that prefetched a group was rarely the one that
// read it. Here the units of the job pair a short run of the product's panel chunks with the LoRA
// tasks that follow it on the same thread: while the thread computes its chunks it prefetches
// exactly those tasks' A and B^T into its own L2 (paced over the chunks' tiles), then runs them
// from cache.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "gemm_packed.h"
#include "sgmv.h"
#include "thread_pool.h"

namespace openlora::cpu {

/** At most this many projections share one fused job (q/k/v, gate/up). */
constexpr int kMaxFusedProjections = 4;

/** One projection of fusedProjections: y = x W^T (+ bias) + the LoRA terms of `lora`. */
struct FusedProjection {
  const PackedMatrix* w = nullptr;  // [out, in], in = x's width
  const float* bias = nullptr;      // [out], or nullptr
  const LoraBatch* lora = nullptr;  // finalized terms over x's rows, or nullptr / empty
  float* y = nullptr;               // [m, out], row stride ldy
  int64_t ldy = 0;
};

/** Scratch of fusedProjections, reused across calls (capacity kept; one calling thread). */
struct FusedScratch {
  PackedJob gemm;
  SgmvJob lora[kMaxFusedProjections];
  std::vector<std::pair<int, int64_t>> loraTasks;  // (projection, task) of the whole job
};

/**
 * For j < count (<= kMaxFusedProjections): y_j = x W_j^T, then + bias_j, then + the terms of
 * lora_j, the bits of gemmPackedMulti, addBias and sgmv run one after another (each output is the
 * same chain of additions; test/native/cpp/fused_lora_check.cc compares every bit).
 * @param x [m, in] float32 (row stride ldx); every W_j of width in, float-packed (F32 / BF16).
 * @param bf16Activations as gemmPackedMulti's.
 * Two parallel regions: the products' chunks with the LoRA tasks (units of a few chunks and the
 * tasks after them, handed out dynamically; each unit prefetches its tasks' A / B^T while its
 * chunks run), then the bias and the terms added row by row.
 * @throws std::invalid_argument when count is out of range or a W_j's width differs.
 */
void fusedProjections(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const FusedProjection* ps, int count, bool bf16Activations,
                      FusedScratch& scratch);

}  // namespace openlora::cpu
