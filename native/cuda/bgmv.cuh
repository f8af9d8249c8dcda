// Launchers for batched gather multi-LoRA (bgmv.cu): vLLM csrc/punica/bgmv semantics, one term
// (row, slot, scale) per decode token. Pool layout, terms and tmp: see sgmv.cuh.
#pragma once

#include "common.cuh"

namespace openlora::cuda {

/**
 * BGMV shrink: tmp[t, r] = x[term_rows[t], :] . A_{term_slot[t]}[r, :] (one block per term; a
 * negative slot writes zeros). Columns >= the slot's rank are written as 0.
 * @param tmp [num_terms, max_rank] fp32; @param x [rows, in] dtype, row stride ld_x
 * @param term_rows, term_slot [num_terms] int32
 * Dtypes: f32, f16, bf16. max_rank <= kLoraMaxRank (256).
 */
cudaError_t launch_bgmv_shrink(float* tmp, const void* x, int64_t ld_x, const void* a_pool, const int32_t* slot_rank,
                               const int32_t* term_rows, const int32_t* term_slot, int num_terms, int in, int max_rank,
                               DType dtype, cudaStream_t stream);

/**
 * BGMV expand: y[term_rows[t], :] += term_scale[t] * tmp[t, :rank] Bt_{term_slot[t]}[:rank, :].
 * Precondition: term_rows are distinct (at most one term per row: the decode case of one
 * adapter per sequence); use launch_sgmv_expand otherwise. Rows without a term are untouched.
 * @param y [rows, out] dtype, row stride ld_y, in/out
 */
cudaError_t launch_bgmv_expand(void* y, int64_t ld_y, const float* tmp, const void* bt_pool, const int32_t* slot_rank,
                               const int32_t* term_rows, const int32_t* term_slot, const float* term_scale,
                               int num_terms, int out, int max_rank, DType dtype, cudaStream_t stream);

}  // namespace openlora::cuda
