// Launchers for segmented multi-LoRA (sgmv.cu): Punica SGMV (Chen et al., MLSys 2024; vLLM
// csrc/punica), in the term formulation of native/cpu/sgmv.h:
//   y[row] += sum over the row's adapters i of  w_i * s_i * B_i (A_i x[row])
// A *term* is one (row, slot, scale = w_i * s_i) pair; a row with several weighted adapters
// (PEFT `cat`, ensembles) has several terms, a row without adapters has none and is untouched.
//
// Adapter slot pool (DESIGN.md: numbered device slots of a fixed maximum rank), per module:
//   a_pool  [num_slots, max_rank, in]   lora_A of slot s at a_pool + s * max_rank * in
//   bt_pool [num_slots, max_rank, out]  lora_B TRANSPOSED (as the CPU LoraBatch keeps it)
//   slot_rank [num_slots] int32 (rank of each slot, <= max_rank); nullptr = max_rank for all
//   (then rows >= rank must be zero-filled by the uploader).
// tmp [num_terms, max_rank] fp32 is the shrink output / expand input (columns >= the slot's
// rank are written as 0 by shrink).
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/** Largest max_rank the LoRA kernels accept. */
constexpr int kLoraMaxRank = 256;

/**
 * SGMV shrink: tmp[t, r] = x[term_rows[t], :] . A_{slot}[r, :] for every term t of every
 * segment. Segment g covers terms [seg_start[g], seg_start[g + 1]), all using slot
 * seg_slot[g] (a negative slot writes zeros); its rows are gathered through term_rows, so a
 * segment may be a prefill run of consecutive rows or decode tokens of many sequences that
 * share one adapter. Each block stages a tile of x rows and A in shared memory, so A is read
 * once per 16 terms.
 * @param tmp [num_terms, max_rank] fp32 (overwritten)
 * @param x [rows, in] dtype, row stride ld_x
 * @param term_rows [num_terms] int32; @param seg_start [num_segments + 1] int32; @param seg_slot [num_segments] int32
 * @param max_seg_len the largest segment (host; sizes the grid)
 * Dtypes: f32, f16, bf16 (x and pools share it). max_rank <= kLoraMaxRank.
 */
cudaError_t launch_sgmv_shrink(float* tmp, const void* x, int64_t ld_x, const void* a_pool, const int32_t* slot_rank,
                               const int32_t* term_rows, const int32_t* seg_start, const int32_t* seg_slot,
                               int num_segments, int max_seg_len, int num_terms, int in, int max_rank, DType dtype,
                               cudaStream_t stream);

/**
 * SGMV expand, general: for every row r with terms (CSR row_ptr / row_terms),
 *   y[r, :] += sum_{t in row r} term_scale[t] * tmp[t, :rank] Bt_{term_slot[t]}[:rank, :]
 * with the sum in fp32 and one rounding per element (no atomics: a row is owned by one block
 * column, so rows with several terms are exact and deterministic). Rows with no terms are not
 * touched. Terms with a negative slot contribute nothing.
 * @param y [num_rows, out] dtype, row stride ld_y, in/out
 * @param row_ptr [num_rows + 1] int32; @param row_terms [row_ptr[num_rows]] int32 term ids
 * @param term_slot, term_scale [num_terms]
 */
cudaError_t launch_sgmv_expand(void* y, int64_t ld_y, const float* tmp, const void* bt_pool, const int32_t* slot_rank,
                               const int32_t* row_ptr, const int32_t* row_terms, const int32_t* term_slot,
                               const float* term_scale, int num_rows, int out, int max_rank, DType dtype,
                               cudaStream_t stream);

}  // namespace openlora::cuda
