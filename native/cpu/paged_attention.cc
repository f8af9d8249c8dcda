// See paged_attention.h.
#include "paged_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_simd.h"  // the SIMD building blocks (and GCC bug 105593's pragmas)
#include "dispatch.h"  // useAvx2(): the CPU backend's one AVX2/FMA dispatch switch
#include "simd_math.h"  // expAvx2

namespace openlora::cpu {

namespace {

using namespace attention_simd;  // kTile, load8, reduce8, hsum, hmax, the P.V and q.k blocks
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

/**
 * One task: query heads q[0..gc) (rows of hd) of KV head kvh over positions [jBegin, min(jEnd,
 * nCtx)); o [gc, hd] is the accumulator. ml == nullptr: o = the normalised output; else o keeps
 * the unnormalised sum and ml[2g], ml[2g + 1] get head g's running max and sum (a partition).
 */
template <typename T>
void attendPortable(const PagedAttentionRow& row, int numKvHeads, int kvh, int hd, float scale, float cap, const float* q, float* o,
                    int gc, int jBegin, int jEnd, float* ml) {
  float mRun[kMaxGroup], lRun[kMaxGroup];
  for (int g = 0; g < gc; g++) {
    mRun[g] = -INFINITY;
    lRun[g] = 0.0f;
  }
  std::fill(o, o + int64_t(gc) * hd, 0.0f);
  const T* kp[kTile];
  const T* vp[kTile];
  float s[kTile];
  const int jStop = std::min(jEnd, row.nCtx);
  for (int j0 = jBegin; j0 < jStop; j0 += kTile) {
    const int n = std::min(kTile, jStop - j0);
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
    if (ml) {
      ml[2 * g] = mRun[g];
      ml[2 * g + 1] = lRun[g];
      continue;
    }
    const float inv = 1.0f / lRun[g];
    float* oh = o + int64_t(g) * hd;
    for (int d = 0; d < hd; d++) oh[d] *= inv;
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2/FMA kernel (its SIMD building blocks, AVX-512 ones included: attention_simd.h).

/**
 * As attendPortable, GC (1..8) query heads at a time, hd % 8 == 0; T: KV element type; for R
 * (1..kMaxRows) consecutive query rows of one sequence (rows[r].nCtx = rows[0].nCtx + r, one block
 * table and start): q of row r at q + r ldq, its output at o + r ldo. The rows share the tiles'
 * row pointers, prefetches and L1-resident K/V, and their independent chains overlap; each row's
 * arithmetic (its tiles, octets, reductions, exps and P.V order) is exactly that of R = 1, so
 * grouping changes no bit (padded score lanes past a row's nCtx read real later positions and
 * are dropped as before: each lane's sum is its own).
 */
template <int GC, typename T, bool W512>
__attribute__((target("avx2,fma"))) void attendAvx2(const PagedAttentionRow* rows, int R, int numKvHeads, int kvh, int hd,
                                                    float scale, float cap, const float* q, int64_t ldq, float* o, int64_t ldo,
                                                    int jBegin, int jEnd, float* ml, int64_t ldml) {
  const PagedAttentionRow& row = rows[0];
  const int nCtxMax = std::min(jEnd, row.nCtx + R - 1);  // rows[R - 1].nCtx, within the partition
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
  tileRows(row, numKvHeads, kvh, hd, jBegin, std::min(kTile, nCtxMax - jBegin), rowPtrs[0][0], rowPtrs[0][1]);
  for (int j0 = jBegin, cur = 0; j0 < nCtxMax; j0 += kTile, cur ^= 1) {
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
        if constexpr (W512 && GC > 1) {
          scoresAvx512<GC, T>(q + r * ldq, k8, hd, scale, &s[r][0][i0]);
        } else {
          for (int g = 0; g < GC; g++) scores8Avx2(q + r * ldq + int64_t(g) * hd, k8, hd, vscale, &s[r][g][i0]);
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
    for (int r = r0; r < R; r++) {
      if constexpr (W512) pvAvx512<GC, T>(s[r], corr[r], vp, std::min(kTile, row.nCtx + r - j0), hd, o + r * ldo);
      else pvAvx2<GC, T>(s[r], corr[r], vp, std::min(kTile, row.nCtx + r - j0), hd, o + r * ldo);
    }
  }
  for (int r = 0; r < R; r++) {
    for (int g = 0; g < GC; g++) {
      if (ml) {  // a partition: the caller combines (a row with no position here: m = -inf, l = 0, o = 0)
        ml[r * ldml + 2 * g] = mRun[r][g];
        ml[r * ldml + 2 * g + 1] = lRun[r][g];
        continue;
      }
      const __m256 inv = _mm256_set1_ps(1.0f / lRun[r][g]);
      float* oh = o + r * ldo + int64_t(g) * hd;
      for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(oh + d, _mm256_mul_ps(_mm256_loadu_ps(oh + d), inv));
    }
  }
}

using AttendFn = void (*)(const PagedAttentionRow*, int, int, int, int, float, float, const float*, int64_t, float*, int64_t, int, int,
                          float*, int64_t);
template <typename T, bool W512>
constexpr AttendFn kAttendAvx2[kMaxGroup + 1] = {nullptr,
                                                 attendAvx2<1, T, W512>,
                                                 attendAvx2<2, T, W512>,
                                                 attendAvx2<3, T, W512>,
                                                 attendAvx2<4, T, W512>,
                                                 attendAvx2<5, T, W512>,
                                                 attendAvx2<6, T, W512>,
                                                 attendAvx2<7, T, W512>,
                                                 attendAvx2<8, T, W512>};

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

/** A run of consecutive rows of one sequence (rows [t, t + rows)) and the partitions it spans. */
struct AttentionGroup {
  int64_t t;
  int rows;
  int parts;
  int64_t partial;  // offset of its partials in the slice's scratch (floats), when parts > 1
};

/** One task family: partition `part` of group `group` (times the KV-head jobs). */
struct AttentionUnit {
  int64_t group;
  int part;
};

/** Partitions of kAttentionPartition positions that a row's visible span [start, nCtx) covers. */
inline int partitionsOf(const PagedAttentionRow& row) {
  return (row.nCtx - row.start + kAttentionPartition - 1) / kAttentionPartition;
}

// NOTE(why): bounds the partials scratch (16 MiB); a long prefill chunk is cut into slices of rows.
// Atomic only for the test hook (setAttentionPartialLimitForTest).
std::atomic<int64_t> maxPartialFloats{int64_t(4) << 20};
static_assert(kAttentionPartition % kAttentionTile == 0, "partitions are whole tiles");

/**
 * FlashDecoding's reduction (Dao et al. 2023; vLLM paged_attention_v2_reduce_kernel): partition p
 * holds acc_p [hd] (unnormalised), m_p and l_p (at acc + p stride, ml + p stride); with M =
 * max_p m_p and w_p = exp(m_p - M): out[d] = (sum_p w_p acc_p[d]) / (sum_p w_p l_p), summed in
 * partition order. One partition gives out = acc * (1 / l), the unpartitioned kernel's bits.
 */
void combinePartitions(const float* acc, const float* ml, int64_t stride, int parts, int hd, float* out) {
  float mMax = -INFINITY;
  for (int p = 0; p < parts; p++) mMax = std::max(mMax, ml[p * stride]);
  float l = 0.0f;
  std::fill(out, out + hd, 0.0f);
  for (int p = 0; p < parts; p++) {
    const float w = std::exp(ml[p * stride] - mMax);  // every partition of the row holds a position: m_p finite
    l += w * ml[p * stride + 1];
    for (int d = 0; d < hd; d++) out[d] += w * acc[p * stride + d];
  }
  const float inv = 1.0f / l;
  for (int d = 0; d < hd; d++) out[d] *= inv;
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
  const int64_t jobsPerUnit = int64_t(numKvHeads) * chunksPerKv;
  const float scale = scores.scale > 0 ? scores.scale : 1.0f / std::sqrt(float(headDim));
  const float cap = scores.softcap;
  const bool avx2 = avx2For(headDim);
  const bool w512 = avx2 && useAvx512() && headDim >= 16;  // the P.V update on 512-bit registers (same bits)
  // Groups of up to kMaxRows consecutive rows of one sequence (a prompt's rows: same cache, block
  // table and start, nCtx one apart) share a task on the AVX2 path; elsewhere every row is alone.
  // Each group is cut into the partitions its last row spans; a unit is (group, partition).
  // NOTE(why): thread_local like the gemm's buffers (no allocation per call once warm); the
  // lambdas read them through references (a worker naming the thread_local would see its own).
  thread_local std::vector<AttentionGroup> groupStore;
  thread_local std::vector<AttentionUnit> unitStore;
  thread_local std::vector<float> partialStore;
  thread_local std::vector<std::pair<size_t, int>> pairStore;  // (group, row in it) of a slice's partitioned rows
  std::vector<AttentionGroup>& groups = groupStore;
  std::vector<std::pair<size_t, int>>& pairs = pairStore;
  std::vector<AttentionUnit>& units = unitStore;
  groups.clear();
  units.clear();
  for (int64_t t = 0; t < m; t++) {
    if (!groups.empty()) {
      AttentionGroup& last = groups.back();
      if (avx2 && last.rows < kMaxRows && sameSequence(rows[last.t], rows[t], last.rows)) {
        last.rows++;
        continue;
      }
    }
    groups.push_back({t, 1, 1, 0});
  }
  for (int64_t g = 0; g < int64_t(groups.size()); g++) {
    AttentionGroup& grp = groups[size_t(g)];
    grp.parts = partitionsOf(rows[grp.t + grp.rows - 1]);
    for (int p = 0; p < grp.parts; p++) units.push_back({g, p});
  }
  const int64_t macsPerJob = std::max<int64_t>(1, 2 * totalCtx * numHeads * int64_t(headDim) / (int64_t(units.size()) * jobsPerUnit));
  const int64_t grain = std::max<int64_t>(1, kMinChunkMacs / macsPerJob);
  const int64_t perRowHead = int64_t(headDim) + 2;  // a partition's partial: acc [headDim], then m, l
  // Slices of groups whose partials fit maxPartialFloats (at least one group a slice).
  const int64_t maxFloats = maxPartialFloats.load(std::memory_order_relaxed);
  for (size_t g0 = 0, u0 = 0; g0 < groups.size();) {
    size_t g1 = g0, u1 = u0;
    int64_t floats = 0;
    while (g1 < groups.size()) {
      const AttentionGroup& grp = groups[g1];
      const int64_t need = grp.parts > 1 ? int64_t(grp.parts) * grp.rows * numHeads * perRowHead : 0;
      if (g1 > g0 && floats + need > maxFloats) break;
      groups[g1].partial = floats;
      floats += need;
      u1 += size_t(grp.parts);
      g1++;
    }
    if (partialStore.size() < size_t(floats)) partialStore.resize(size_t(floats));
    float* partial = partialStore.data();
    pool.parallelFor(int64_t(u1 - u0) * jobsPerUnit, grain, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; job++) {
        const AttentionUnit& unit = units[u0 + size_t(job / jobsPerUnit)];
        const AttentionGroup& grp = groups[size_t(unit.group)];
        const int rest = int(job % jobsPerUnit);
        const int kvh = rest / chunksPerKv;
        const int g0h = (rest % chunksPerKv) * kMaxGroup;
        const int gc = std::min(kMaxGroup, group - g0h);
        const int h0 = kvh * group + g0h;
        const PagedAttentionRow& row = rows[grp.t];
        const int jBegin = row.start + unit.part * kAttentionPartition;
        const int jEnd = jBegin + kAttentionPartition;  // a one-partition group ends before it anyway
        const float* qh = q + grp.t * ldq + int64_t(h0) * headDim;
        // A partition's partial for (row r, head h): acc at pa + (r numHeads + h) headDim, m and l at pm + 2 (r numHeads + h).
        float* pa = partial + grp.partial + int64_t(unit.part) * grp.rows * numHeads * perRowHead;
        float* pm = pa + int64_t(grp.rows) * numHeads * headDim;
        float* oh = grp.parts > 1 ? pa + int64_t(h0) * headDim : out + grp.t * ldo + int64_t(h0) * headDim;
        const int64_t ldOut = grp.parts > 1 ? int64_t(numHeads) * headDim : ldo;
        float* ml = grp.parts > 1 ? pm + 2 * h0 : nullptr;
        const bool bf16 = row.kvDtype == DType::BF16;
        if (avx2) {
          const AttendFn* fns = bf16 ? (w512 ? kAttendAvx2<uint16_t, true> : kAttendAvx2<uint16_t, false>)
                                     : (w512 ? kAttendAvx2<float, true> : kAttendAvx2<float, false>);
          fns[gc](rows + grp.t, grp.rows, numKvHeads, kvh, headDim, scale, cap, qh, ldq, oh, ldOut, jBegin, jEnd, ml, 2 * int64_t(numHeads));
        } else if (bf16) {
          attendPortable<uint16_t>(row, numKvHeads, kvh, headDim, scale, cap, qh, oh, gc, jBegin, jEnd, ml);
        } else {
          attendPortable<float>(row, numKvHeads, kvh, headDim, scale, cap, qh, oh, gc, jBegin, jEnd, ml);
        }
      }
    });
    // Combine the partitions of each (row, head) of the slice's partitioned groups, in order.
    pairs.clear();
    for (size_t g = g0; g < g1; g++)
      if (groups[g].parts > 1)
        for (int r = 0; r < groups[g].rows; r++) pairs.push_back({g, r});
    if (!pairs.empty()) {
      pool.parallelFor(int64_t(pairs.size()) * numHeads, 16, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; i++) {
          const auto [g, r] = pairs[size_t(i / numHeads)];
          const int h = int(i % numHeads);
          const AttentionGroup& grp = groups[g];
          const int64_t stride = int64_t(grp.rows) * numHeads * perRowHead;  // one partition's partials
          const float* acc = partial + grp.partial + (int64_t(r) * numHeads + h) * headDim;
          const float* mlp = partial + grp.partial + int64_t(grp.rows) * numHeads * headDim + 2 * (int64_t(r) * numHeads + h);
          combinePartitions(acc, mlp, stride, partitionsOf(rows[grp.t + r]), headDim, out + (grp.t + r) * ldo + int64_t(h) * headDim);
        }
      });
    }
    g0 = g1;
    u0 = u1;
  }
}

const char* attentionKernelName(int headDim) {
  if (!avx2For(headDim)) return "portable";
  return useAvx512() && headDim >= 16 ? "avx2+fma, avx512 q.k and p.v" : "avx2+fma";
}

int64_t setAttentionPartialLimitForTest(int64_t floats) { return maxPartialFloats.exchange(floats); }

void attentionExpForTest(const float* x, float* y, int64_t n) {
  if (useAvx2()) {
    expAvx2Array(x, y, n);
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = std::exp(x[i]);
  }
}

}  // namespace openlora::cpu
