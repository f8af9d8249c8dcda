// See paged_attention.h.
#include "paged_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace openlora::cpu {

namespace {

// NOTE(why): the same 8-accumulator dot as ops.cc's contiguous attention, so results are
// bit-identical to it whatever the block size.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

}  // namespace

void pagedAttention(ThreadPool& pool, const float* q, int64_t ldq, const PagedAttentionRow* rows, float* out, int64_t ldo,
                    int64_t m, int numHeads, int numKvHeads, int headDim) {
  const int group = numHeads / numKvHeads;
  const float scale = 1.0f / std::sqrt(float(headDim));
  int maxCtx = 0;
  for (int64_t t = 0; t < m; t++) maxCtx = std::max(maxCtx, rows[t].nCtx);
  pool.parallelFor(m * numHeads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(std::max(1, maxCtx)));  // [nCtx] per-thread
    for (int64_t job = begin; job < end; job++) {
      const int64_t t = job / numHeads;
      const int h = int(job % numHeads);
      const PagedAttentionRow& row = rows[t];
      const int bs = row.blockSize;
      const int kvh = h / group;
      const float* qh = q + t * ldq + int64_t(h) * headDim;
      // Start of KV head kvh inside block b: ((b * numKvHeads + kvh) * bs) * headDim.
      auto headBase = [&](const float* cache, int j) {
        return cache + ((int64_t(row.blockTable[j / bs]) * numKvHeads + kvh) * bs) * headDim;
      };
      float mx = -INFINITY;
      for (int j0 = 0; j0 < row.nCtx; j0 += bs) {
        const float* kb = headBase(row.keyCache, j0);  // [block_size, head_dim]
        const int n = std::min(bs, row.nCtx - j0);
        for (int s = 0; s < n; s++) {
          const float sc = dot(qh, kb + int64_t(s) * headDim, headDim) * scale;
          scores[size_t(j0 + s)] = sc;
          mx = std::max(mx, sc);
        }
      }
      float sum = 0;
      for (int j = 0; j < row.nCtx; j++) {
        scores[size_t(j)] = std::exp(scores[size_t(j)] - mx);
        sum += scores[size_t(j)];
      }
      const float inv = 1.0f / sum;
      float* oh = out + t * ldo + int64_t(h) * headDim;
      std::fill(oh, oh + headDim, 0.0f);
      for (int j0 = 0; j0 < row.nCtx; j0 += bs) {
        const float* vb = headBase(row.valueCache, j0);  // [block_size, head_dim]
        const int n = std::min(bs, row.nCtx - j0);
        for (int s = 0; s < n; s++) {
          const float p = scores[size_t(j0 + s)] * inv;
          const float* vj = vb + int64_t(s) * headDim;
          for (int d = 0; d < headDim; d++) oh[d] += p * vj[d];
        }
      }
    }
  });
}

}  // namespace openlora::cpu
