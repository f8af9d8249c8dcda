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
//   shrink:  tmp[j, :rank] = x[row_j] A^T            (per group; gathered rows, A streamed once)
//   expand:  y[row_j, :]  += (w s)_j tmp[j] B^T      (B stored transposed [rank, out]: axpy rows)
// Parallel over chunks of terms (shrink) and blocks of output columns (expand: no two tasks
// ever write the same element, even when one row is in several groups).
#pragma once

#include <cstdint>
#include <vector>

#include "thread_pool.h"

namespace openlora::cpu {

/**
 * The LoRA work of one (layer, module) in one step. Build with add(), then finalize(), then
 * apply with sgmv(). Reusable across calls (clear() keeps capacity).
 */
class LoraBatch {
 public:
  /** One adapter pair and the contiguous run [termBegin, termEnd) of its terms. */
  struct Group {
    const float* a = nullptr;   // [rank, in]   lora_A
    const float* bT = nullptr;  // [rank, out]  lora_B transposed
    int rank = 0;
    int64_t termBegin = 0, termEnd = 0;
  };

  void clear();
  /** Rows [rowBegin, rowEnd) use the pair (a, bT, rank) with factor scale = w_i * s_i. */
  void add(const float* a, const float* bT, int rank, int64_t rowBegin, int64_t rowEnd, float scale);
  /** Group the added terms by pair (stable: rows keep their order within a group). */
  void finalize();

  bool empty() const { return pending_.empty(); }
  const std::vector<Group>& groups() const { return groups_; }
  const std::vector<int64_t>& rows() const { return rows_; }      // [terms]
  const std::vector<float>& scales() const { return scales_; }    // [terms]
  int maxRank() const { return maxRank_; }

 private:
  struct Pending {
    int group;
    int64_t rowBegin, rowEnd;
    float scale;
  };
  std::vector<Group> groups_;
  std::vector<Pending> pending_;
  std::vector<int64_t> rows_;
  std::vector<float> scales_;
  std::vector<int64_t> counts_;
  int maxRank_ = 0;
};

/**
 * y[row] += scale * B (A x[row]) for every term of `batch` (finalized).
 * @param x [rows, in] (row stride ldx); @param y [rows, out] (row stride ldy), accumulated.
 * @param tmp scratch, resized to [terms, batch.maxRank()].
 * AVX2/FMA when useAvx2(), else portable C++ (same results up to float rounding).
 */
void sgmv(ThreadPool& pool, const float* x, int64_t ldx, int64_t in, float* y, int64_t ldy, int64_t out, const LoraBatch& batch,
          std::vector<float>& tmp);

}  // namespace openlora::cpu
