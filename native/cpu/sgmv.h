// Batched multi-LoRA for one target module and one forward step (Punica's SGMV / BGMV, S-LoRA):
//   y[row] += sum over the row's adapters i of  w_i * s_i * B_i (A_i x[row])
// for every row of the step at once, each row with its own adapter set.
//
// References: Chen et al., "Punica: Multi-Tenant LoRA Serving" (MLSys 2024), SGMV = segmented
// gather matrix-vector; vLLM csrc/punica/bgmv (BGMV = batched gather matrix-vector, one row per
// decode token); Sheng et al., "S-LoRA: Serving Thousands of Concurrent LoRA Adapters" (MLSys 2024).
//
// CPU formulation: rows are grouped by adapter pair (LoraGroup). A prefill sequence contributes a
// contiguous segment of rows (SGMV); decode tokens of many sequences that share an adapter are
// gathered into one group (BGMV), so each A and B is streamed once per step and module, not once
// per token. A row with several weighted adapters (PEFT `cat`) appears in several groups; a row
// without adapters appears in none and costs nothing.
//
// Fused per group: one task takes a group (or a chunk of <= 16 of its rows, for long prefill
// segments), shrinks its rows against A [rank, in] and expands against B^T [rank, out] right
// away, so each adapter's weights are streamed from memory once, contiguously, by one thread:
//   shrink:  h[j, :rank] = x[row_j] A^T               (A rows streamed; x rows stay in L1)
//   expand:  y[row_j, :] += (w s)_j h[j] B^T          (B stored transposed [rank, out])
// The tasks are cut into 2 runs per thread of about equal cost (bytes streamed + multiply-adds),
// handed out dynamically (ThreadPool::parallelFor). Within a run, while a task streams its group,
// a paced software prefetch brings the next group's A and B^T into L2 (one line per 64 bytes
// consumed), so only a run's first group waits on DRAM latency.
// Decode steps are bound by memory bandwidth (every active adapter is read once per step), so
// A / B stay in their file dtype when it is 16-bit (BF16 / F16, converted exactly to F32 in
// registers: half the bytes of F32). The expand (sgmv_expand.cc) keeps one row's sums for 4 rank
// steps in registers and widens BF16 by a shift or a mask (no shuffle).
//
// Determinism: the arithmetic for one row never depends on the other rows of the step. Each dot
// product and each output element is accumulated in a fixed order (whatever the row's group size
// or task split, and whatever the adapter's dtype: an expand sums from 0, then adds to y;
// sgmv_kernels.h). A row with one term is expanded straight into y; a row with several terms has
// each term expanded into its own zero-initialised buffer, then added to y in the order the terms
// were add()ed (not in group order, which depends on the other rows).
#pragma once

#include <cstdint>
#include <vector>

#include "../src/dtype.h"  // DType of LoRA weights (F32, BF16, F16)
#include "dispatch.h"  // PrefetchRanges
#include "thread_pool.h"

namespace openlora::cpu {

/**
 * A read-only view of one LoRA weight matrix: `data` holds row-major elements of `dtype`
 * (little-endian; F16 = IEEE binary16, BF16 = top half of an F32). Implicit from `const float*`.
 */
struct LoraWeights {
  const void* data = nullptr;
  DType dtype = DType::F32;
  LoraWeights() = default;
  LoraWeights(const float* p) : data(p), dtype(DType::F32) {}  // NOLINT: implicit on purpose
  LoraWeights(const void* p, DType t) : data(p), dtype(t) {}
};

/**
 * The LoRA work of one (layer, module) in one step. Build with add(), then finalize(), then
 * apply with sgmv(). Reusable across calls (clear() keeps capacity).
 */
class LoraBatch {
 public:
  /** One adapter pair and the contiguous run [termBegin, termEnd) of its terms. */
  struct Group {
    LoraWeights a;   // [rank, in]   lora_A
    LoraWeights bT;  // [rank, out]  lora_B transposed (same dtype as a not required)
    int rank = 0;
    int64_t termBegin = 0, termEnd = 0;
  };

  /** Forget every term (keeps capacity). */
  void clear();
  /**
   * Rows [rowBegin, rowEnd) use the pair (a, bT, rank) with factor scale = w_i * s_i. Pairs are
   * told apart by a.data. Empty ranges and rank <= 0 are ignored. Rows must be >= 0.
   */
  void add(LoraWeights a, LoraWeights bT, int rank, int64_t rowBegin, int64_t rowEnd, float scale);
  /** Group the added terms by pair (stable: rows keep their order within a group). */
  void finalize();

  bool empty() const { return pending_.empty(); }
  const std::vector<Group>& groups() const { return groups_; }
  const std::vector<int64_t>& rows() const { return rows_; }      // [terms]
  const std::vector<float>& scales() const { return scales_; }    // [terms]
  int maxRank() const { return maxRank_; }
  /** Per term: -1 when the term is its row's only term, else its index among shared terms. */
  const std::vector<int32_t>& sharedSlot() const { return shared_; }
  /**
   * Rows with several terms, ascending. The shared slots of sharedRows()[k] are
   * [sharedRowBegin()[k], sharedRowBegin()[k + 1]), in the order their terms were add()ed.
   */
  const std::vector<int64_t>& sharedRows() const { return sharedRows_; }
  const std::vector<int32_t>& sharedRowBegin() const { return sharedRowBegin_; }  // [sharedRows + 1]

 private:
  struct Pending {
    int group;
    int64_t rowBegin, rowEnd;
    float scale;
  };
  int findGroup(const void* a) const;
  void indexInsert(const void* a, int group);
  std::vector<Group> groups_;
  std::vector<Pending> pending_;
  std::vector<int64_t> rows_;
  std::vector<float> scales_;
  std::vector<int64_t> counts_;
  std::vector<int32_t> rowTerms_;  // [max row + 1] terms per row (finalize scratch)
  std::vector<int32_t> shared_;
  std::vector<int64_t> sharedRows_;
  std::vector<int32_t> sharedRowBegin_;
  std::vector<std::pair<int64_t, int32_t>> sharedScratch_;  // (row, term) in add() order
  std::vector<std::pair<const void*, int>> index_;  // open addressing: a.data -> group
  int64_t maxRow_ = -1;
  int maxRank_ = 0;
};

/**
 * y[row] += scale * B (A x[row]) for every term of `batch` (finalized).
 * @param x [rows, in] float32 (row stride ldx); @param y [rows, out] float32 (row stride ldy),
 *   accumulated. Rows absent from the batch are left untouched.
 * @param tmp scratch, resized to [terms, maxRank] + [shared terms, out] floats.
 * AVX-512 F/BW when useAvx512() (sgmv_avx512.cc), else AVX2/FMA (+F16C for F16 weights) when
 * useAvx2(), else portable C++: the same results up to float rounding (the shrink's dot products
 * sum in a different order on each). Throws only what the pool rethrows (std::bad_alloc).
 */
void sgmv(ThreadPool& pool, const float* x, int64_t ldx, int64_t in, float* y, int64_t ldy, int64_t out, const LoraBatch& batch,
          std::vector<float>& tmp);

/** One task of an sgmv: group g's terms [t0, t1) (a group, or a <= 16-term chunk of a long one). */
struct SgmvTask {
  int g;
  int64_t t0, t1;
};

/**
 * sgmv() as tasks the caller hands out itself (the LoRA half of cpu/fused_lora.cc, mixed with the
 * base product's panel chunks in one parallel region): prepare() on the calling thread, run()
 * every task exactly once on any threads (each term's scale * B (A x) into its own buffer, from
 * 0), then finishRows() adds them to y, a row's terms in add() order. y ends bit-identical to
 * what sgmv() gives (an expand sums from 0 and adds to y either way). Reusable (capacity kept);
 * x and the batch must outlive the runs.
 */
class SgmvJob {
 public:
  /** The terms of `batch` (finalized) on x [rows, in] (row stride ldx) for outputs of width out. */
  void prepare(const float* x, int64_t ldx, int64_t in, int64_t out, const LoraBatch& batch);
  int64_t tasks() const { return int64_t(tasks_.size()); }
  /** Appends the memory task i reads (its group's A and B^T) to pf. */
  void addPrefetch(int64_t i, PrefetchRanges& pf) const;
  /** Task i on this thread (after prepare(); each task once). */
  void run(int64_t i) const;
  /** y[r] += the results of row r's terms, in add() order, for rows [r0, r1) (y [rows, out], row stride ldy); after every run(). */
  void finishRows(int64_t r0, int64_t r1, float* y, int64_t ldy) const;

 private:
  const LoraBatch* batch_ = nullptr;
  const float* x_ = nullptr;
  int64_t ldx_ = 0, in_ = 0, out_ = 0, ld_ = 0;
  std::vector<SgmvTask> tasks_;
  mutable std::vector<float> h_;      // [terms, ld] scale * (x A^T) (run() writes its tasks' rows)
  mutable std::vector<float> delta_;  // [terms, out] each term's result (run() writes its tasks' terms)
  std::vector<int32_t> rowTerm_;  // per row: its only term, -1 none, -2 - k: shared row k
  std::vector<int32_t> slotTerm_;  // shared slot -> term
};

/** The kernels sgmv() runs on this machine: "avx512", "avx2+fma" or "portable". */
const char* sgmvKernelName();

}  // namespace openlora::cpu
