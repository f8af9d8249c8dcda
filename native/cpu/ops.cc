// See ops.h.
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace openlora::cpu {

namespace {

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

void rmsNorm(const float* x, const float* w, float eps, float* y, int64_t m, int64_t n) {
  for (int64_t r = 0; r < m; r++) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0;  // NOTE(why): double accumulation; HF's fp32 mean differs by ~1e-7 relative
    for (int64_t i = 0; i < n; i++) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (int64_t i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
  }
}

void applyRope(float* x, int64_t ldx, const int32_t* pos, const float* invFreq, int64_t m, int heads, int headDim) {
  const int half = headDim / 2;
  std::vector<float> cs(half), sn(half);
  for (int64_t t = 0; t < m; t++) {
    for (int j = 0; j < half; j++) {
      const float angle = float(pos[t]) * invFreq[j];  // float32 product, as HF
      cs[j] = float(std::cos(double(angle)));
      sn[j] = float(std::sin(double(angle)));
    }
    for (int h = 0; h < heads; h++) {
      float* v = x + t * ldx + int64_t(h) * headDim;
      for (int j = 0; j < half; j++) {
        const float a = v[j], b = v[j + half];
        v[j] = a * cs[j] - b * sn[j];
        v[j + half] = b * cs[j] + a * sn[j];
      }
    }
  }
}

void siluMul(float* gate, const float* up, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    const float g = gate[i];
    gate[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

void addBias(float* y, int64_t ld, const float* b, int64_t m, int64_t n) {
  for (int64_t r = 0; r < m; r++) {
    for (int64_t i = 0; i < n; i++) y[r * ld + i] += b[i];
  }
}

void attention(ThreadPool& pool, const float* q, int64_t ldq, const AttentionRow* rows, float* out, int64_t ldo,
               int64_t m, int numHeads, int numKvHeads, int headDim) {
  const int group = numHeads / numKvHeads;
  const int64_t kvStride = int64_t(numKvHeads) * headDim;  // floats between positions
  const float scale = 1.0f / std::sqrt(float(headDim));
  int maxCtx = 0;
  for (int64_t t = 0; t < m; t++) maxCtx = std::max(maxCtx, rows[t].nCtx);
  pool.parallelFor(m * numHeads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(std::max(1, maxCtx)));  // [nCtx] per-thread
    for (int64_t job = begin; job < end; job++) {
      const int64_t t = job / numHeads;
      const int h = int(job % numHeads);
      const AttentionRow& row = rows[t];
      const float* qh = q + t * ldq + int64_t(h) * headDim;
      const int64_t kvOff = int64_t(h / group) * headDim;
      float mx = -INFINITY;
      for (int j = 0; j < row.nCtx; j++) {
        scores[j] = dot(qh, row.keys + j * kvStride + kvOff, headDim) * scale;
        mx = std::max(mx, scores[j]);
      }
      float sum = 0;
      for (int j = 0; j < row.nCtx; j++) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      const float inv = 1.0f / sum;
      float* oh = out + t * ldo + int64_t(h) * headDim;
      std::fill(oh, oh + headDim, 0.0f);
      for (int j = 0; j < row.nCtx; j++) {
        const float p = scores[j] * inv;
        const float* vj = row.values + j * kvStride + kvOff;
        for (int d = 0; d < headDim; d++) oh[d] += p * vj[d];
      }
    }
  });
}

}  // namespace openlora::cpu
