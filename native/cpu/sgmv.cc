// See sgmv.h.
#include "sgmv.h"

#include <immintrin.h>

#include <algorithm>

#include "gemm.h"

namespace openlora::cpu {

void LoraBatch::clear() {
  groups_.clear();
  pending_.clear();
  rows_.clear();
  scales_.clear();
  maxRank_ = 0;
}

void LoraBatch::add(const float* a, const float* bT, int rank, int64_t rowBegin, int64_t rowEnd, float scale) {
  if (rowEnd <= rowBegin || rank <= 0) return;
  // NOTE(why): linear search; a step has at most a few dozen distinct pairs per module and the
  // most recent one is the likeliest match (consecutive decode rows of one adapter).
  int g = -1;
  for (int i = int(groups_.size()) - 1; i >= 0; i--) {
    if (groups_[size_t(i)].a == a) {
      g = i;
      break;
    }
  }
  if (g < 0) {
    g = int(groups_.size());
    groups_.push_back(Group{a, bT, rank, 0, 0});
    maxRank_ = std::max(maxRank_, rank);
  }
  pending_.push_back(Pending{g, rowBegin, rowEnd, scale});
}

void LoraBatch::finalize() {
  counts_.assign(groups_.size() + 1, 0);
  for (const Pending& p : pending_) counts_[size_t(p.group) + 1] += p.rowEnd - p.rowBegin;
  for (size_t g = 0; g < groups_.size(); g++) {
    counts_[g + 1] += counts_[g];
    groups_[g].termBegin = counts_[g];
    groups_[g].termEnd = counts_[g + 1];
  }
  rows_.resize(size_t(counts_.back()));
  scales_.resize(size_t(counts_.back()));
  for (const Pending& p : pending_) {
    int64_t& at = counts_[size_t(p.group)];
    for (int64_t r = p.rowBegin; r < p.rowEnd; r++, at++) {
      rows_[size_t(at)] = r;
      scales_[size_t(at)] = p.scale;
    }
  }
}

namespace {

constexpr int64_t kTermsPerShrinkTask = 16;
constexpr int64_t kExpandCols = 32;  // output columns per expand register tile (4 x 8 lanes)

/** y[c0:c1] += sum_r coef[r] * bT[r, c0:c1], portable. */
void expandRowPortable(const float* coef, int rank, const float* bT, int64_t ldb, float* y, int64_t c0, int64_t c1) {
  for (int r = 0; r < rank; r++) {
    const float c = coef[r];
    const float* b = bT + r * ldb;
    for (int64_t j = c0; j < c1; j++) y[j] += c * b[j];
  }
}

/** Same contract, AVX2/FMA: 32 columns held in 4 registers across the whole rank loop. */
__attribute__((target("avx2,fma"))) void expandRowAvx2(const float* coef, int rank, const float* bT, int64_t ldb, float* y,
                                                        int64_t c0, int64_t c1) {
  int64_t j = c0;
  for (; j + kExpandCols <= c1; j += kExpandCols) {
    __m256 a0 = _mm256_loadu_ps(y + j), a1 = _mm256_loadu_ps(y + j + 8), a2 = _mm256_loadu_ps(y + j + 16),
           a3 = _mm256_loadu_ps(y + j + 24);
    for (int r = 0; r < rank; r++) {
      const __m256 c = _mm256_broadcast_ss(coef + r);
      const float* b = bT + r * ldb + j;
      a0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(b), a0);
      a1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(b + 8), a1);
      a2 = _mm256_fmadd_ps(c, _mm256_loadu_ps(b + 16), a2);
      a3 = _mm256_fmadd_ps(c, _mm256_loadu_ps(b + 24), a3);
    }
    _mm256_storeu_ps(y + j, a0);
    _mm256_storeu_ps(y + j + 8, a1);
    _mm256_storeu_ps(y + j + 16, a2);
    _mm256_storeu_ps(y + j + 24, a3);
  }
  for (; j + 8 <= c1; j += 8) {
    __m256 a = _mm256_loadu_ps(y + j);
    for (int r = 0; r < rank; r++) a = _mm256_fmadd_ps(_mm256_broadcast_ss(coef + r), _mm256_loadu_ps(bT + r * ldb + j), a);
    _mm256_storeu_ps(y + j, a);
  }
  if (j < c1) expandRowPortable(coef, rank, bT, ldb, y, j, c1);
}

}  // namespace

void sgmv(ThreadPool& pool, const float* x, int64_t ldx, int64_t in, float* y, int64_t ldy, int64_t out, const LoraBatch& batch,
          std::vector<float>& tmp) {
  const auto& groups = batch.groups();
  const auto& rows = batch.rows();
  const auto& scales = batch.scales();
  const int64_t terms = int64_t(rows.size());
  if (terms == 0) return;
  const int64_t ld = batch.maxRank();  // row stride of tmp
  tmp.resize(size_t(terms * ld));

  // Shrink tasks: (group, terms [t0, t1)) with at most kTermsPerShrinkTask terms each.
  struct Task {
    const LoraBatch::Group* g;
    int64_t t0, t1;
  };
  std::vector<Task> tasks;  // NOTE: a handful per call; small next to the math
  int64_t macs = 0;
  for (const auto& g : groups) {
    for (int64_t t0 = g.termBegin; t0 < g.termEnd; t0 += kTermsPerShrinkTask) tasks.push_back(Task{&g, t0, std::min(g.termEnd, t0 + kTermsPerShrinkTask)});
    macs += (g.termEnd - g.termBegin) * g.rank * (in + out);
  }
  const bool parallel = macs >= 96 * 1024;
  pool.parallelFor(int64_t(tasks.size()), parallel ? 1 : int64_t(tasks.size()), [&](int64_t i0, int64_t i1) {
    const float* xs[kTermsPerShrinkTask];
    for (int64_t i = i0; i < i1; i++) {
      const Task& t = tasks[size_t(i)];
      for (int64_t j = t.t0; j < t.t1; j++) xs[j - t.t0] = x + rows[size_t(j)] * ldx;
      gemmNTRows(xs, t.t1 - t.t0, t.g->a, in, t.g->rank, in, tmp.data() + t.t0 * ld, ld);
    }
  });

  // Expand: blocks of output columns; within a block every group's B slice stays in L1 while
  // all of the group's rows stream past.
  const bool avx2 = useAvx2();
  const int64_t colBlocks = (out + kExpandCols - 1) / kExpandCols;
  pool.parallelFor(colBlocks, parallel ? std::max<int64_t>(1, colBlocks / (4 * pool.size())) : colBlocks, [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * kExpandCols, c1 = std::min(out, b1 * kExpandCols);
    float coef[4096];  // [rank] w s tmp[j]; ranks are bounded by maxLoraRank (<= 4096)
    for (const auto& g : groups) {
      for (int64_t j = g.termBegin; j < g.termEnd; j++) {
        const float s = scales[size_t(j)];
        const float* tj = tmp.data() + j * ld;
        for (int r = 0; r < g.rank; r++) coef[r] = s * tj[r];
        float* yr = y + rows[size_t(j)] * ldy;
        if (avx2) expandRowAvx2(coef, g.rank, g.bT, out, yr, c0, c1);
        else expandRowPortable(coef, g.rank, g.bT, out, yr, c0, c1);
      }
    }
  });
}

}  // namespace openlora::cpu
