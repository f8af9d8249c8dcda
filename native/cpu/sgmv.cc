// See sgmv.h.
#include "sgmv.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_features.h"
#include "dispatch.h"  // useAvx2(): the CPU backend's one AVX2/FMA dispatch switch
#include "sgmv_kernels.h"  // Pf, hsum, the expand kernel

namespace openlora::cpu {

// --- LoraBatch ------------------------------------------------------------------------------

namespace {

size_t hashPtr(const void* p, size_t mask) {
  return size_t((uint64_t(reinterpret_cast<uintptr_t>(p)) >> 4) * 0x9E3779B97F4A7C15ull >> 32) & mask;
}

}  // namespace

void LoraBatch::clear() {
  groups_.clear();
  pending_.clear();
  rows_.clear();
  scales_.clear();
  shared_.clear();
  sharedRows_.clear();
  sharedRowBegin_.clear();
  std::fill(index_.begin(), index_.end(), std::pair<const void*, int>{nullptr, -1});
  maxRow_ = -1;
  maxRank_ = 0;
}

int LoraBatch::findGroup(const void* a) const {
  if (index_.empty()) return -1;
  const size_t mask = index_.size() - 1;
  for (size_t h = hashPtr(a, mask);; h = (h + 1) & mask) {
    if (index_[h].first == a) return index_[h].second;
    if (index_[h].second < 0) return -1;
  }
}

void LoraBatch::indexInsert(const void* a, int group) {
  const size_t mask = index_.size() - 1;
  size_t h = hashPtr(a, mask);
  while (index_[h].second >= 0) h = (h + 1) & mask;
  index_[h] = {a, group};
}

void LoraBatch::add(LoraWeights a, LoraWeights bT, int rank, int64_t rowBegin, int64_t rowEnd, float scale) {
  if (rowEnd <= rowBegin || rank <= 0) return;
  // NOTE(why): a hash on A's address, not a scan: 64 adapters x 7 modules x layers would make a
  // linear search quadratic in the number of distinct adapters of a step.
  int g = findGroup(a.data);
  if (g < 0) {
    g = int(groups_.size());
    groups_.push_back(Group{a, bT, rank, 0, 0});
    maxRank_ = std::max(maxRank_, rank);
    if (groups_.size() * 2 > index_.size()) {  // keep the load factor <= 1/2
      index_.assign(std::max<size_t>(64, index_.size() * 2), {nullptr, -1});
      for (size_t i = 0; i < groups_.size(); i++) indexInsert(groups_[i].a.data, int(i));
    } else {
      indexInsert(a.data, g);
    }
  }
  pending_.push_back(Pending{g, rowBegin, rowEnd, scale});
  maxRow_ = std::max(maxRow_, rowEnd - 1);
}

void LoraBatch::finalize() {
  counts_.assign(groups_.size() + 1, 0);
  for (const Pending& p : pending_) counts_[size_t(p.group) + 1] += p.rowEnd - p.rowBegin;
  for (size_t g = 0; g < groups_.size(); g++) {
    counts_[g + 1] += counts_[g];
    groups_[g].termBegin = counts_[g];
    groups_[g].termEnd = counts_[g + 1];
  }
  const size_t terms = size_t(counts_.back());
  rows_.resize(terms);
  scales_.resize(terms);
  shared_.assign(terms, -1);
  rowTerms_.assign(size_t(maxRow_ + 1), 0);
  bool anyShared = false;
  for (const Pending& p : pending_) {
    for (int64_t r = p.rowBegin; r < p.rowEnd; r++) anyShared |= ++rowTerms_[size_t(r)] > 1;
  }
  sharedScratch_.clear();
  for (const Pending& p : pending_) {
    int64_t& at = counts_[size_t(p.group)];
    for (int64_t r = p.rowBegin; r < p.rowEnd; r++, at++) {
      rows_[size_t(at)] = r;
      scales_[size_t(at)] = p.scale;
      if (anyShared && rowTerms_[size_t(r)] > 1) sharedScratch_.push_back({r, int32_t(at)});
    }
  }
  sharedRows_.clear();
  sharedRowBegin_.clear();
  if (!anyShared) return;
  // Stable by row: a row's terms keep their add() order.
  std::stable_sort(sharedScratch_.begin(), sharedScratch_.end(), [](const auto& l, const auto& r) { return l.first < r.first; });
  for (size_t i = 0; i < sharedScratch_.size(); i++) {
    if (i == 0 || sharedScratch_[i].first != sharedScratch_[i - 1].first) {
      sharedRows_.push_back(sharedScratch_[i].first);
      sharedRowBegin_.push_back(int32_t(i));
    }
    shared_[size_t(sharedScratch_[i].second)] = int32_t(i);
  }
  sharedRowBegin_.push_back(int32_t(sharedScratch_.size()));
}

// --- kernels --------------------------------------------------------------------------------

namespace {

using sgmv_detail::hsum;
using sgmv_detail::Pf;

constexpr int64_t kRowsPerTask = 16;   // rows of one group per task (prefill segments are split)
constexpr int64_t kPrefetchLines = 16;   // first cache lines of the next group's A and B^T, asked for at once
constexpr int64_t kPartsPerThread = 2;  // runs of tasks per pool thread (see sgmv())

/** Element i of a weight matrix of dtype t, as float32 (exact). */
inline float loadAny(DType t, const void* p, int64_t i) {
  switch (t) {
    case DType::BF16: return bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16ToFloat(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

/** What one task needs: a group (or a <= kRowsPerTask chunk of its rows). */
struct Ctx {
  const LoraBatch* batch;
  const float* x;
  int64_t ldx, in;
  float* y;
  int64_t ldy, out;
  float* h;      // [terms, ld]: coef = scale * (x A^T) per term
  int64_t ld;
  float* delta;  // [shared terms, out], or [terms, out] when ownBuffers
  bool ownBuffers = false;  // every term into its own buffer (SgmvJob), not only shared ones
};

using Task = SgmvTask;

/** Gather the task's input rows and output targets (y row, or the term's own delta buffer). */
void taskRows(const Ctx& c, const Task& t, const float** xs, float** dst, bool* zero) {
  const auto& rows = c.batch->rows();
  const auto& shared = c.batch->sharedSlot();
  for (int64_t j = t.t0; j < t.t1; j++) {
    const int64_t row = rows[size_t(j)];
    const int32_t s = shared[size_t(j)];
    xs[j - t.t0] = c.x + row * c.ldx;
    if (c.ownBuffers) {
      dst[j - t.t0] = c.delta + j * c.out;
      zero[j - t.t0] = true;
    } else {
      dst[j - t.t0] = s < 0 ? c.y + row * c.ldy : c.delta + int64_t(s) * c.out;
      zero[j - t.t0] = s >= 0;
    }
  }
}

// Portable: per (row, r) a k-ordered dot product; per output element an r-ordered accumulation
// from 0, then added to y (or stored, for a term in its own buffer).
void taskPortable(const Ctx& c, const Task& t) {
  const LoraBatch::Group& g = c.batch->groups()[size_t(t.g)];
  const int64_t n = t.t1 - t.t0;
  const float* xs[kRowsPerTask];
  float* dst[kRowsPerTask];
  bool zero[kRowsPerTask];
  taskRows(c, t, xs, dst, zero);
  for (int64_t j = 0; j < n; j++) {
    float* hj = c.h + (t.t0 + j) * c.ld;
    const float s = c.batch->scales()[size_t(t.t0 + j)];
    for (int r = 0; r < g.rank; r++) {
      float acc = 0;
      for (int64_t k = 0; k < c.in; k++) acc += xs[j][k] * loadAny(g.a.dtype, g.a.data, r * c.in + k);
      hj[r] = s * acc;
    }
    // NOTE(why): summed from 0, then added to dst, as the vector kernels do: a term gives the
    // same bits added straight to y (sgmv) or kept in its own buffer first (SgmvJob).
    thread_local std::vector<float> sumStore;
    sumStore.assign(size_t(c.out), 0.0f);
    float* sum = sumStore.data();
    for (int r = 0; r < g.rank; r++) {
      const float cr = hj[r];
      const int64_t o = r * c.out;
      switch (g.bT.dtype) {
        case DType::F32: {
          const float* b = static_cast<const float*>(g.bT.data) + o;
          for (int64_t q = 0; q < c.out; q++) sum[q] += cr * b[q];
          break;
        }
        default:
          for (int64_t q = 0; q < c.out; q++) sum[q] += cr * loadAny(g.bT.dtype, g.bT.data, o + q);
      }
    }
    for (int64_t q = 0; q < c.out; q++) dst[j][q] = zero[j] ? sum[q] : dst[j][q] + sum[q];
  }
}

#define OPENLORA_AVX2 __attribute__((target("avx2,fma,f16c")))

// Loaders: 8 consecutive elements at index i as __m256, or one as float (exact conversions).
struct F32L {
  OPENLORA_AVX2 static inline __m256 v8(const void* p, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(p) + i); }
  static inline float s1(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};
struct Bf16L {
  OPENLORA_AVX2 static inline __m256 v8(const void* p, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static inline float s1(const void* p, int64_t i) { return bf16ToFloat(static_cast<const uint16_t*>(p)[i]); }
};
struct F16L {
  OPENLORA_AVX2 static inline __m256 v8(const void* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static inline float s1(const void* p, int64_t i) { return f16ToFloat(static_cast<const uint16_t*>(p)[i]); }
};

/**
 * h[i * ld + r0 + q] = x_i . A[r0 + q] for R rows and C rows of A. Each dot product: one 8-lane
 * FMA accumulator over k (ascending), hsum, then the k tail with scalar fma: the same order for
 * every R and C, so a row's result does not depend on how rows were tiled.
 */
template <class L, int R, int C>
OPENLORA_AVX2 void shrinkTile(const float* const* xs, const void* a, int64_t in, int r0, float* h, int64_t ld, Pf& pf, int64_t esz) {
  __m256 acc[R][C];
  for (int i = 0; i < R; i++)
    for (int q = 0; q < C; q++) acc[i][q] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= in; k += 8) {
    __m256 xv[R];
    for (int i = 0; i < R; i++) xv[i] = _mm256_loadu_ps(xs[i] + k);
    for (int q = 0; q < C; q++) {
      const __m256 av = L::v8(a, (r0 + q) * in + k);
      for (int i = 0; i < R; i++) acc[i][q] = _mm256_fmadd_ps(xv[i], av, acc[i][q]);
    }
    pf.advance(C * 8 * esz);
  }
  for (int i = 0; i < R; i++) {
    for (int q = 0; q < C; q++) {
      float s = hsum(acc[i][q]);
      for (int64_t kk = k; kk < in; kk++) s = std::fma(xs[i][kk], L::s1(a, (r0 + q) * in + kk), s);
      h[i * ld + r0 + q] = s;
    }
  }
}

template <class L, int R>
OPENLORA_AVX2 void shrinkRowsR(const float* const* xs, const void* a, int64_t in, int rank, float* h, int64_t ld, Pf& pf, int64_t esz) {
  int r0 = 0;
  for (; r0 + 4 <= rank; r0 += 4) shrinkTile<L, R, 4>(xs, a, in, r0, h, ld, pf, esz);
  switch (rank - r0) {
    case 3: shrinkTile<L, R, 3>(xs, a, in, r0, h, ld, pf, esz); break;
    case 2: shrinkTile<L, R, 2>(xs, a, in, r0, h, ld, pf, esz); break;
    case 1: shrinkTile<L, R, 1>(xs, a, in, r0, h, ld, pf, esz); break;
    default: break;
  }
}

/** h[j, :rank] = x_j A^T for n rows, 3 rows at a time (12 accumulators). */
template <class L>
OPENLORA_AVX2 void shrinkAvx2(const float* const* xs, int64_t n, const void* a, int64_t in, int rank, float* h, int64_t ld, Pf& pf,
                              int64_t esz) {
  int64_t i = 0;
  for (; i + 3 <= n; i += 3) shrinkRowsR<L, 3>(xs + i, a, in, rank, h + i * ld, ld, pf, i == 0 ? esz : 0);
  if (n - i == 2) shrinkRowsR<L, 2>(xs + i, a, in, rank, h + i * ld, ld, pf, i == 0 ? esz : 0);
  if (n - i == 1) shrinkRowsR<L, 1>(xs + i, a, in, rank, h + i * ld, ld, pf, i == 0 ? esz : 0);
}

/** One task on the vector kernels: AVX-512 F/BW when avx512 (sgmv_avx512.cc), else AVX2/FMA. */
OPENLORA_AVX2 void taskVector(const Ctx& c, const Task& t, Pf& pf, bool avx512) {
  const LoraBatch::Group& g = c.batch->groups()[size_t(t.g)];
  const int64_t n = t.t1 - t.t0;
  const float* xs[kRowsPerTask];
  float* dst[kRowsPerTask];
  bool zero[kRowsPerTask];
  taskRows(c, t, xs, dst, zero);
  float* h = c.h + t.t0 * c.ld;
  if (avx512) {
    sgmv_detail::shrinkAvx512(xs, n, g.a.data, g.a.dtype, c.in, g.rank, h, c.ld, pf);
  } else {
    switch (g.a.dtype) {
      case DType::BF16: shrinkAvx2<Bf16L>(xs, n, g.a.data, c.in, g.rank, h, c.ld, pf, dtypeSize(g.a.dtype)); break;
      case DType::F16: shrinkAvx2<F16L>(xs, n, g.a.data, c.in, g.rank, h, c.ld, pf, dtypeSize(g.a.dtype)); break;
      default: shrinkAvx2<F32L>(xs, n, g.a.data, c.in, g.rank, h, c.ld, pf, dtypeSize(g.a.dtype)); break;
    }
  }
  for (int64_t j = 0; j < n; j++) {
    const float s = c.batch->scales()[size_t(t.t0 + j)];
    for (int r = 0; r < g.rank; r++) h[j * c.ld + r] *= s;
  }
  if (avx512) sgmv_detail::expandAvx512(h, c.ld, n, dst, zero, g.bT.data, g.bT.dtype, g.rank, c.out, pf);
  else sgmv_detail::expandAvx2(h, c.ld, n, dst, zero, g.bT.data, g.bT.dtype, g.rank, c.out, pf);
}

/** A prefetch cursor over group g's A then B^T, less the first kPrefetchLines of each (already asked for). */
Pf prefetcherFor(const LoraBatch::Group& g, int64_t in, int64_t out) {
  const char* a = static_cast<const char*>(g.a.data);
  const char* b = static_cast<const char*>(g.bT.data);
  const int64_t aBytes = int64_t(g.rank) * in * dtypeSize(g.a.dtype), bBytes = int64_t(g.rank) * out * dtypeSize(g.bT.dtype);
  Pf pf;
  pf.p = a + std::min(aBytes, kPrefetchLines * 64);
  pf.end = a + aBytes;
  pf.p2 = b + std::min(bBytes, kPrefetchLines * 64);
  pf.end2 = b + bBytes;
  for (int64_t i = 0; i < kPrefetchLines; i++) {  // the first lines right away: their latency is the shortest to hide
    if (i * 64 < aBytes) _mm_prefetch(a + i * 64, _MM_HINT_T1);
    if (i * 64 < bBytes) _mm_prefetch(b + i * 64, _MM_HINT_T1);
  }
  return pf;
}

/**
 * The tasks of a finalized batch: (group, <= kRowsPerTask of its terms), in group order; when
 * `cost` is given, the prefix sums of a cost estimate each ([tasks + 1]: bytes of A and B^T
 * streamed plus the multiply-adds; a byte ~ 2 FMAs at memory speed). Returns the multiply-adds
 * of the whole batch (+ 4 rows per group for streaming A and B).
 */
int64_t buildTasks(const LoraBatch& batch, int64_t in, int64_t out, std::vector<Task>& tasks, std::vector<int64_t>* cost) {
  const auto& groups = batch.groups();
  tasks.clear();
  if (cost) cost->assign(1, 0);
  int64_t macs = 0;
  for (size_t g = 0; g < groups.size(); g++) {
    const auto& gr = groups[g];
    const int64_t bytes = int64_t(gr.rank) * (in * dtypeSize(gr.a.dtype) + out * dtypeSize(gr.bT.dtype));
    for (int64_t t0 = gr.termBegin; t0 < gr.termEnd; t0 += kRowsPerTask) {
      const int64_t t1 = std::min(gr.termEnd, t0 + kRowsPerTask);
      tasks.push_back(Task{int(g), t0, t1});
      if (cost) cost->push_back(cost->back() + bytes + (t1 - t0) * gr.rank * (in + out) / 2);
    }
    macs += (gr.termEnd - gr.termBegin + 4) * gr.rank * (in + out);
  }
  return macs;
}

/** One task on the best kernels this CPU has for its dtypes. */
void runTask(const Ctx& c, const Task& t, Pf& pf) {
  const bool avx2 = useAvx2();
  const bool f16c = avx2 && cpuFeatures().f16c;
  const auto& g = c.batch->groups()[size_t(t.g)];
  const bool vec = avx2 && (f16c || (g.a.dtype != DType::F16 && g.bT.dtype != DType::F16));
  if (vec) taskVector(c, t, pf, useAvx512());
  else taskPortable(c, t);
}

}  // namespace

void sgmv(ThreadPool& pool, const float* x, int64_t ldx, int64_t in, float* y, int64_t ldy, int64_t out, const LoraBatch& batch,
          std::vector<float>& tmp) {
  const auto& groups = batch.groups();
  const int64_t terms = int64_t(batch.rows().size());
  if (terms == 0) return;
  const int64_t ld = batch.maxRank();
  const int64_t sharedTerms = batch.sharedRowBegin().empty() ? 0 : int64_t(batch.sharedRowBegin().back());
  tmp.resize(size_t(terms * ld + sharedTerms * out));
  const Ctx c{&batch, x, ldx, in, y, ldy, out, tmp.data(), ld, tmp.data() + terms * ld};

  // NOTE(why): references, not the thread_locals themselves: pool workers must see the caller's.
  thread_local std::vector<Task> taskStore;
  thread_local std::vector<int64_t> costStore;
  std::vector<Task>& tasks = taskStore;
  std::vector<int64_t>& cost = costStore;  // prefix sums, [tasks + 1]
  const int64_t macs = buildTasks(batch, in, out, tasks, &cost);
  const int64_t nt = int64_t(tasks.size());
  // Parts: contiguous runs of tasks of about equal cost, kPartsPerThread per thread, handed out
  // dynamically (a thread that is not running leaves its parts to the others).
  // NOTE(why): long runs, not single tasks: within a run a thread knows the next group and
  // streams it into L2 while it computes the current one (Pf); only a run's first group starts
  // cold. Runs of equal cost keep the tail (one thread waiting for the other) short.
  const int64_t parts = macs >= 96 * 1024 ? std::min<int64_t>(nt, kPartsPerThread * pool.size()) : 1;
  thread_local std::vector<int64_t> boundStore;
  std::vector<int64_t>& bound = boundStore;  // [parts + 1] task index where each part starts
  bound.assign(size_t(parts + 1), nt);
  bound[0] = 0;
  for (int64_t p = 1, i = 0; p < parts; p++) {
    const int64_t target = cost.back() * p / parts;
    while (i < nt && cost[size_t(i)] < target) i++;
    bound[size_t(p)] = std::max(bound[size_t(p - 1)], i);
  }
  pool.parallelFor(parts, 1, [&](int64_t p0, int64_t p1) {
    const int64_t i0 = bound[size_t(p0)], i1 = bound[size_t(p1)];
    for (int64_t i = i0; i < i1; i++) {
      const Task& t = tasks[size_t(i)];
      Pf pf;  // empty: prefetches nothing
      if (i + 1 < i1 && tasks[size_t(i + 1)].g != t.g) pf = prefetcherFor(groups[size_t(tasks[size_t(i + 1)].g)], in, out);
      runTask(c, t, pf);
    }
  });

  // Rows with several terms: add each term's delta in add() order.
  const auto& sharedRows = batch.sharedRows();
  if (sharedRows.empty()) return;
  const auto& begin = batch.sharedRowBegin();
  const int64_t nr = int64_t(sharedRows.size());
  pool.parallelFor(nr, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, out)), [&](int64_t r0, int64_t r1) {
    for (int64_t k = r0; k < r1; k++) {
      float* yr = y + sharedRows[size_t(k)] * ldy;
      for (int32_t s = begin[size_t(k)]; s < begin[size_t(k) + 1]; s++) {
        const float* d = c.delta + int64_t(s) * out;
        for (int64_t q = 0; q < out; q++) yr[q] += d[q];
      }
    }
  });
}

void SgmvJob::prepare(const float* x, int64_t ldx, int64_t in, int64_t out, const LoraBatch& batch) {
  batch_ = &batch;
  x_ = x, ldx_ = ldx, in_ = in, out_ = out;
  buildTasks(batch, in, out, tasks_, nullptr);
  const int64_t terms = int64_t(batch.rows().size());
  ld_ = batch.maxRank();
  h_.resize(size_t(terms * ld_));
  delta_.resize(size_t(terms * out));
  // Per row of the batch: its only term, or (shared rows) its terms in add() order.
  const auto& rows = batch.rows();
  const auto& shared = batch.sharedSlot();
  int64_t maxRow = -1;
  for (int64_t r : rows) maxRow = std::max(maxRow, r);
  rowTerm_.assign(size_t(maxRow + 1), -1);
  const int64_t sharedTerms = batch.sharedRowBegin().empty() ? 0 : int64_t(batch.sharedRowBegin().back());
  slotTerm_.assign(size_t(sharedTerms), -1);
  for (int64_t t = 0; t < terms; t++) {
    const int32_t sl = shared[size_t(t)];
    if (sl < 0) rowTerm_[size_t(rows[size_t(t)])] = int32_t(t);
    else slotTerm_[size_t(sl)] = int32_t(t);
  }
  const auto& sharedRows = batch.sharedRows();
  for (size_t k = 0; k < sharedRows.size(); k++) rowTerm_[size_t(sharedRows[k])] = -2 - int32_t(k);  // -2 - k: shared row k
}

void SgmvJob::addPrefetch(int64_t i, PrefetchRanges& pf) const {
  const LoraBatch::Group& g = batch_->groups()[size_t(tasks_[size_t(i)].g)];
  pf.add(g.a.data, int64_t(g.rank) * in_ * int64_t(dtypeSize(g.a.dtype)));
  pf.add(g.bT.data, int64_t(g.rank) * out_ * int64_t(dtypeSize(g.bT.dtype)));
}

void SgmvJob::run(int64_t i) const {
  Ctx c{batch_, x_, ldx_, in_, nullptr, 0, out_, h_.data(), ld_, delta_.data()};
  c.ownBuffers = true;
  Pf pf;  // empty: the caller prefetched the task's A and B^T (addPrefetch)
  runTask(c, tasks_[size_t(i)], pf);
}

void SgmvJob::finishRows(int64_t r0, int64_t r1, float* y, int64_t ldy) const {
  const auto& begin = batch_->sharedRowBegin();
  r1 = std::min<int64_t>(r1, int64_t(rowTerm_.size()));
  for (int64_t r = r0; r < r1; r++) {
    const int32_t t = rowTerm_[size_t(r)];
    if (t == -1) continue;
    float* yr = y + r * ldy;
    auto add = [&](int32_t term) {
      const float* d = delta_.data() + int64_t(term) * out_;
      for (int64_t q = 0; q < out_; q++) yr[q] += d[q];
    };
    if (t >= 0) {
      add(t);
    } else {
      const int32_t k = -2 - t;
      for (int32_t s = begin[size_t(k)]; s < begin[size_t(k) + 1]; s++) add(slotTerm_[size_t(s)]);
    }
  }
}

const char* sgmvKernelName() { return useAvx512() ? "avx512" : useAvx2() ? "avx2+fma" : "portable"; }

}  // namespace openlora::cpu
