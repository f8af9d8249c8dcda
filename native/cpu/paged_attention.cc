// See paged_attention.h.
#include "paged_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch.h"  // useAvx2(): the CPU backend's one AVX2/FMA dispatch switch
#include "simd_math.h"  // expAvx2

namespace openlora::cpu {

namespace {

constexpr int kTile = kAttentionTile;
constexpr int kMaxGroup = 8;  // query heads per task (one KV head's group, in chunks of 8)
constexpr int kMaxRows = 4;   // consecutive query rows of one sequence per AVX2 task (prefill)

/** KV element storage types: float32, or bfloat16 bits (uint16_t). */
inline float widen(float x) { return x; }
inline float widen(uint16_t x) { return bf16ToFloat(x); }

/** K and V row pointers of positions [j0, j0 + n) of KV head kvh, through the block table. */
template <typename T>
inline void tileRows(const PagedAttentionRow& row, int numKvHeads, int kvh, int headDim, int j0, int n, const T** kp,
                     const T** vp) {
  const int bs = row.blockSize;
  int b = j0 / bs;
  int s = j0 - b * bs;
  for (int i = 0; i < n; i++) {
    // Block b, head kvh, slot s: ((block * numKvHeads + kvh) * bs + s) * headDim.
    const int64_t off = ((int64_t(row.blockTable[b]) * numKvHeads + kvh) * bs + s) * headDim;
    kp[i] = static_cast<const T*>(row.keyCache) + off;
    vp[i] = static_cast<const T*>(row.valueCache) + off;
    if (++s == bs) {
      s = 0;
      b++;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Portable kernel.

/** 8 interleaved partial sums, then a fixed tree: the order never depends on the caller. */
template <typename T>
inline float dotPortable(const float* a, const T* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; j++) acc[j] += a[i + j] * widen(b[i + j]);
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += a[i] * widen(b[i]);
  return s;
}

/** One task: query heads q[0..gc) (rows of hd) of KV head kvh; o [gc, hd] is the accumulator. */
template <typename T>
void attendPortable(const PagedAttentionRow& row, int numKvHeads, int kvh, int hd, float scale, float cap, const float* q, float* o,
                    int gc) {
  float mRun[kMaxGroup], lRun[kMaxGroup];
  for (int g = 0; g < gc; g++) {
    mRun[g] = -INFINITY;
    lRun[g] = 0.0f;
  }
  std::fill(o, o + int64_t(gc) * hd, 0.0f);
  const T* kp[kTile];
  const T* vp[kTile];
  float s[kTile];
  for (int j0 = row.start; j0 < row.nCtx; j0 += kTile) {
    const int n = std::min(kTile, row.nCtx - j0);
    tileRows(row, numKvHeads, kvh, hd, j0, n, kp, vp);
    for (int g = 0; g < gc; g++) {
      const float* qh = q + int64_t(g) * hd;
      float tmax = -INFINITY;
      for (int i = 0; i < n; i++) {
        s[i] = dotPortable(qh, kp[i], hd) * scale;
        if (cap > 0) s[i] = cap * std::tanh(s[i] / cap);
        tmax = std::max(tmax, s[i]);
      }
      const float mNew = std::max(mRun[g], tmax);
      const float corr = std::exp(mRun[g] - mNew);  // 0 on the first tile (m = -inf)
      float sum = 0.0f;
      for (int i = 0; i < n; i++) {
        s[i] = std::exp(s[i] - mNew);
        sum += s[i];
      }
      lRun[g] = lRun[g] * corr + sum;
      mRun[g] = mNew;
      float* oh = o + int64_t(g) * hd;
      if (corr != 1.0f) {
        for (int d = 0; d < hd; d++) oh[d] *= corr;
      }
      for (int i = 0; i < n; i++) {
        const float p = s[i];
        const T* vj = vp[i];
        for (int d = 0; d < hd; d++) oh[d] += p * widen(vj[d]);
      }
    }
  }
  for (int g = 0; g < gc; g++) {
    const float inv = 1.0f / lRun[g];
    float* oh = o + int64_t(g) * hd;
    for (int d = 0; d < hd; d++) oh[d] *= inv;
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2/FMA kernel.

/** 8 KV elements from p (any alignment) as float32: a plain load, or bf16 widened exactly. */
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

/** [sum(a0), sum(a1), ..., sum(a7)]: each lane's sum is a fixed tree of its own vector. */
__attribute__((target("avx2,fma"))) inline __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                                          __m256 a6, __m256 a7) {
  const __m256 t0 = _mm256_hadd_ps(a0, a1);  // [a0 01, a0 23, a1 01, a1 23 | a0 45, a0 67, a1 45, a1 67]
  const __m256 t1 = _mm256_hadd_ps(a2, a3);
  const __m256 t2 = _mm256_hadd_ps(a4, a5);
  const __m256 t3 = _mm256_hadd_ps(a6, a7);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);  // [a0 0-3, a1 0-3, a2 0-3, a3 0-3 | a0 4-7, ..., a3 4-7]
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) inline float hmax(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

/** Columns [d, d + 8 DB) of o[g] = corr[g] o[g] + sum_i p[g][i] vp[i] (i in order), GC x DB chains. */
template <int GC, int DB, typename T>
__attribute__((target("avx2,fma"))) inline void pvBlockAvx2(const float (*p)[kTile], const float* corr, const T* const* vp,
                                                            int n, int hd, int d, float* o) {
  __m256 acc[GC][DB];
  for (int g = 0; g < GC; g++) {
    const __m256 c = _mm256_set1_ps(corr[g]);
    for (int k = 0; k < DB; k++) acc[g][k] = _mm256_mul_ps(_mm256_loadu_ps(o + int64_t(g) * hd + d + 8 * k), c);
  }
  for (int i = 0; i < n; i++) {
    __m256 v[DB];
    for (int k = 0; k < DB; k++) v[k] = load8(vp[i] + d + 8 * k);
    for (int g = 0; g < GC; g++) {
      const __m256 pg = _mm256_broadcast_ss(&p[g][i]);
      for (int k = 0; k < DB; k++) acc[g][k] = _mm256_fmadd_ps(pg, v[k], acc[g][k]);
    }
  }
  for (int g = 0; g < GC; g++)
    for (int k = 0; k < DB; k++) _mm256_storeu_ps(o + int64_t(g) * hd + d + 8 * k, acc[g][k]);
}

/**
 * The P.V update of one tile over all hd columns. NOTE(why): about 8 independent FMA chains
 * (GC heads x DB column octets) hide the FMA latency; one chain per head stalls on it.
 * Each column's sum runs over positions in order, so the blocking changes no bit.
 */
template <int GC, typename T>
__attribute__((target("avx2,fma"))) inline void pvAvx2(const float (*p)[kTile], const float* corr, const T* const* vp, int n,
                                                       int hd, float* o) {
  constexpr int DB = GC == 1 ? 8 : GC == 2 ? 4 : GC <= 4 ? 2 : 1;
  int d = 0;
  for (; d + 8 * DB <= hd; d += 8 * DB) pvBlockAvx2<GC, DB, T>(p, corr, vp, n, hd, d, o);
  for (; d < hd; d += 8) pvBlockAvx2<GC, 1, T>(p, corr, vp, n, hd, d, o);
}

/**
 * As attendPortable, GC (1..8) query heads at a time, hd % 8 == 0; T: KV element type; for R
 * (1..kMaxRows) consecutive query rows of one sequence (rows[r].nCtx = rows[0].nCtx + r, one block
 * table and start): q of row r at q + r ldq, its output at o + r ldo. The rows share the tiles'
 * row pointers, prefetches and L1-resident K/V, and their independent chains overlap; each row's
 * arithmetic (its tiles, octets, reductions, exps and P.V order) is exactly that of R = 1, so
 * grouping changes no bit (padded score lanes past a row's nCtx read real later positions and
 * are dropped as before: each lane's sum is its own).
 */
template <int GC, typename T>
__attribute__((target("avx2,fma"))) void attendAvx2(const PagedAttentionRow* rows, int R, int numKvHeads, int kvh, int hd,
                                                    float scale, float cap, const float* q, int64_t ldq, float* o, int64_t ldo) {
  const PagedAttentionRow& row = rows[0];
  const int nCtxMax = row.nCtx + R - 1;  // rows[R - 1].nCtx
  float mRun[kMaxRows][GC], lRun[kMaxRows][GC], corr[kMaxRows][GC];
  for (int r = 0; r < R; r++) {
    for (int g = 0; g < GC; g++) {
      mRun[r][g] = -INFINITY;
      lRun[r][g] = 0.0f;
    }
    std::fill(o + r * ldo, o + r * ldo + int64_t(GC) * hd, 0.0f);
  }
  const T* rowPtrs[2][2][kTile];             // [this tile, next tile][K, V][position]
  alignas(32) float s[kMaxRows][GC][kTile];  // scores, then exp(score - running max)
  const __m256 vscale = _mm256_set1_ps(scale);
  tileRows(row, numKvHeads, kvh, hd, row.start, std::min(kTile, nCtxMax - row.start), rowPtrs[0][0], rowPtrs[0][1]);
  for (int j0 = row.start, cur = 0; j0 < nCtxMax; j0 += kTile, cur ^= 1) {
    const int nAll = std::min(kTile, nCtxMax - j0);  // positions of this tile some row sees
    const T** kp = rowPtrs[cur][0];
    const T** vp = rowPtrs[cur][1];
    for (int i = nAll; i < ((nAll + 7) & ~7); i++) kp[i] = kp[nAll - 1];  // pad the last octet (its scores are dropped)
    // NOTE(why): blocks sit anywhere in the pool, so the hardware prefetcher loses the stream at
    // every block edge; the next tile's K/V rows are fetched while this one computes, an octet of
    // positions per score octet below. (Issued as one burst of 256 lines per tile, the prefetches
    // stalled the core on full miss buffers: one decode row over 4096 positions of a 360M
    // model's 32 layers read its fp32 KV at 14-16 GB/s on a 2-vCPU Zen 5, spread out 18-20 GB/s.)
    const int nn = j0 + kTile < nCtxMax ? std::min(kTile, nCtxMax - j0 - kTile) : 0;  // next tile's positions
    const T** nk = rowPtrs[cur ^ 1][0];
    const T** nv = rowPtrs[cur ^ 1][1];
    if (nn > 0) tileRows(row, numKvHeads, kvh, hd, j0 + kTile, nn, nk, nv);
    // Rows [r0, R) see this tile (a row whose nCtx ends before it is done).
    const int r0 = std::max(0, j0 - row.nCtx + 1);

    // Scores: 8 positions at a time, each K row loaded once per query head from L1.
    for (int r = r0; r < R; r++) {
      const int n8 = (std::min(kTile, row.nCtx + r - j0) + 7) & ~7;
      for (int i0 = 0; i0 < n8; i0 += 8) {
        if (r == r0 && nn > 0) {  // the next tile's positions [i0, i0 + 8) (a short tile's last octet: the rest)
          const int i1 = std::min(nn, i0 + 8 >= n8 ? kTile : i0 + 8);
          for (int i = i0; i < i1; i++) {
            for (int d = 0; d < hd; d += 64 / int(sizeof(T))) {  // one prefetch per 64-byte line
              _mm_prefetch(reinterpret_cast<const char*>(nk[i] + d), _MM_HINT_T0);
              _mm_prefetch(reinterpret_cast<const char*>(nv[i] + d), _MM_HINT_T0);
            }
          }
        }
        const T* const* k8 = kp + i0;
        for (int g = 0; g < GC; g++) {
          const float* qh = q + r * ldq + int64_t(g) * hd;
          __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
          for (int d = 0; d < hd; d += 8) {
            const __m256 qv = _mm256_loadu_ps(qh + d);
            a0 = _mm256_fmadd_ps(load8(k8[0] + d), qv, a0);
            a1 = _mm256_fmadd_ps(load8(k8[1] + d), qv, a1);
            a2 = _mm256_fmadd_ps(load8(k8[2] + d), qv, a2);
            a3 = _mm256_fmadd_ps(load8(k8[3] + d), qv, a3);
            a4 = _mm256_fmadd_ps(load8(k8[4] + d), qv, a4);
            a5 = _mm256_fmadd_ps(load8(k8[5] + d), qv, a5);
            a6 = _mm256_fmadd_ps(load8(k8[6] + d), qv, a6);
            a7 = _mm256_fmadd_ps(load8(k8[7] + d), qv, a7);
          }
          _mm256_store_ps(&s[r][g][i0], _mm256_mul_ps(reduce8(a0, a1, a2, a3, a4, a5, a6, a7), vscale));
        }
      }
    }
    // Online softmax update (FlashAttention-2): running max m, running sum l, rescale c.
    for (int r = r0; r < R; r++) {
      const int n = std::min(kTile, row.nCtx + r - j0), n8 = (n + 7) & ~7;
      if (cap > 0) {  // Gemma 2 attn_logit_softcapping (padded lanes are overwritten below)
        for (int g = 0; g < GC; g++)
          for (int i = 0; i < n; i++) s[r][g][i] = cap * std::tanh(s[r][g][i] / cap);
      }
      for (int g = 0; g < GC; g++) {
        for (int i = n; i < n8; i++) s[r][g][i] = -INFINITY;
        __m256 mx = _mm256_load_ps(&s[r][g][0]);
        for (int i0 = 8; i0 < n8; i0 += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(&s[r][g][i0]));
        const float mNew = std::max(mRun[r][g], hmax(mx));
        corr[r][g] = std::exp(mRun[r][g] - mNew);  // 0 on the first tile (m = -inf)
        const __m256 vm = _mm256_set1_ps(mNew);
        __m256 sum = _mm256_setzero_ps();
        for (int i0 = 0; i0 < n8; i0 += 8) {
          const __m256 e = expAvx2(_mm256_sub_ps(_mm256_load_ps(&s[r][g][i0]), vm));  // padded lanes: exp(-inf) = 0
          _mm256_store_ps(&s[r][g][i0], e);
          sum = _mm256_add_ps(sum, e);
        }
        lRun[r][g] = lRun[r][g] * corr[r][g] + hsum(sum);
        mRun[r][g] = mNew;
      }
    }
    // acc = c acc + sum_j p_j v_j: each V row loaded once for the GC query heads.
    for (int r = r0; r < R; r++) pvAvx2<GC, T>(s[r], corr[r], vp, std::min(kTile, row.nCtx + r - j0), hd, o + r * ldo);
  }
  for (int r = 0; r < R; r++) {
    for (int g = 0; g < GC; g++) {
      const __m256 inv = _mm256_set1_ps(1.0f / lRun[r][g]);
      float* oh = o + r * ldo + int64_t(g) * hd;
      for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(oh + d, _mm256_mul_ps(_mm256_loadu_ps(oh + d), inv));
    }
  }
}

using AttendFn = void (*)(const PagedAttentionRow*, int, int, int, int, float, float, const float*, int64_t, float*, int64_t);
template <typename T>
constexpr AttendFn kAttendAvx2[kMaxGroup + 1] = {nullptr,          attendAvx2<1, T>, attendAvx2<2, T>, attendAvx2<3, T>,
                                                 attendAvx2<4, T>, attendAvx2<5, T>, attendAvx2<6, T>, attendAvx2<7, T>,
                                                 attendAvx2<8, T>};

bool avx2For(int headDim) { return useAvx2() && headDim % 8 == 0; }

/** Whether b is the row `ahead` positions after a in the same sequence (one KV view and start). */
bool sameSequence(const PagedAttentionRow& a, const PagedAttentionRow& b, int ahead) {
  return b.keyCache == a.keyCache && b.valueCache == a.valueCache && b.blockTable == a.blockTable && b.blockSize == a.blockSize &&
         b.kvDtype == a.kvDtype && b.start == a.start && b.nCtx == a.nCtx + ahead;
}

__attribute__((target("avx2,fma"))) void expAvx2Array(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, expAvx2(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(x + i, x + n, buf);
    _mm256_store_ps(buf, expAvx2(_mm256_load_ps(buf)));
    std::copy(buf, buf + (n - i), y + i);
  }
}

// NOTE(why): a task hand-over costs about a microsecond; chunks carry at least this many
// multiply-adds (q.k plus p.v) so that short decode contexts are not split finer than that.
constexpr int64_t kMinChunkMacs = 16 * 1024;

}  // namespace

void pagedAttention(ThreadPool& pool, const float* q, int64_t ldq, const PagedAttentionRow* rows, float* out, int64_t ldo,
                    int64_t m, int numHeads, int numKvHeads, int headDim, AttentionScores scores) {
  if (numKvHeads < 1 || numHeads < numKvHeads || numHeads % numKvHeads != 0)
    throw std::invalid_argument("pagedAttention: numHeads (" + std::to_string(numHeads) + ") must be a positive multiple of numKvHeads (" +
                                std::to_string(numKvHeads) + ")");
  if (headDim < 1) throw std::invalid_argument("pagedAttention: headDim must be >= 1, got " + std::to_string(headDim));
  int64_t totalCtx = 0;
  for (int64_t t = 0; t < m; t++) {
    if (rows[t].kvDtype != DType::F32 && rows[t].kvDtype != DType::BF16)
      throw std::invalid_argument("pagedAttention: row " + std::to_string(t) + " has an unknown kvDtype");
    if (rows[t].nCtx < 1 || rows[t].blockSize < 1 || rows[t].start < 0 || rows[t].start >= rows[t].nCtx)
      throw std::invalid_argument("pagedAttention: row " + std::to_string(t) + " has nCtx " + std::to_string(rows[t].nCtx) +
                                  ", start " + std::to_string(rows[t].start) + " and blockSize " + std::to_string(rows[t].blockSize) +
                                  " (nCtx and blockSize must be >= 1, 0 <= start < nCtx)");
    totalCtx += rows[t].nCtx - rows[t].start;
  }
  if (m <= 0) return;
  const int group = numHeads / numKvHeads;
  const int chunksPerKv = (group + kMaxGroup - 1) / kMaxGroup;
  const int64_t jobsPerRow = int64_t(numKvHeads) * chunksPerKv;
  const float scale = scores.scale > 0 ? scores.scale : 1.0f / std::sqrt(float(headDim));
  const float cap = scores.softcap;
  const bool avx2 = avx2For(headDim);
  // Groups of up to kMaxRows consecutive rows of one sequence (a prompt's rows: same cache, block
  // table and start, nCtx one apart) share a task on the AVX2 path; elsewhere every row is alone.
  // NOTE(why): thread_local like the gemm's buffers (no allocation per call once warm); the
  // lambda reads it through `starts` (a worker naming groupStart would see its own, empty one).
  thread_local std::vector<int64_t> groupStart;
  groupStart.clear();
  for (int64_t t = 0; t < m; t++) {
    const int64_t g0 = groupStart.empty() ? -1 : groupStart.back();
    const bool joins = avx2 && g0 >= 0 && t - g0 < kMaxRows && sameSequence(rows[g0], rows[t], int(t - g0));
    if (!joins) groupStart.push_back(t);
  }
  const int64_t groups = int64_t(groupStart.size());
  groupStart.push_back(m);
  const std::vector<int64_t>& starts = groupStart;
  const int64_t jobs = groups * jobsPerRow;
  const int64_t macsPerJob = std::max<int64_t>(1, 2 * totalCtx * numHeads * int64_t(headDim) / jobs);
  pool.parallelFor(jobs, std::max<int64_t>(1, kMinChunkMacs / macsPerJob), [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; job++) {
      const int64_t grp = job / jobsPerRow;
      const int64_t t = starts[size_t(grp)];
      const int rowsIn = int(starts[size_t(grp) + 1] - t);
      const int rest = int(job % jobsPerRow);
      const int kvh = rest / chunksPerKv;
      const int g0 = (rest % chunksPerKv) * kMaxGroup;
      const int gc = std::min(kMaxGroup, group - g0);
      const int h0 = kvh * group + g0;
      const float* qh = q + t * ldq + int64_t(h0) * headDim;
      float* oh = out + t * ldo + int64_t(h0) * headDim;
      const bool bf16 = rows[t].kvDtype == DType::BF16;
      if (avx2) (bf16 ? kAttendAvx2<uint16_t> : kAttendAvx2<float>)[gc](rows + t, rowsIn, numKvHeads, kvh, headDim, scale, cap, qh, ldq, oh, ldo);
      else if (bf16) attendPortable<uint16_t>(rows[t], numKvHeads, kvh, headDim, scale, cap, qh, oh, gc);
      else attendPortable<float>(rows[t], numKvHeads, kvh, headDim, scale, cap, qh, oh, gc);
    }
  });
}

const char* attentionKernelName(int headDim) { return avx2For(headDim) ? "avx2+fma" : "portable"; }

void attentionExpForTest(const float* x, float* y, int64_t n) {
  if (useAvx2()) {
    expAvx2Array(x, y, n);
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = std::exp(x[i]);
  }
}

}  // namespace openlora::cpu
