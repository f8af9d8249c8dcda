// See gemm_amx.h. Intel SDM vol. 1 ch. 20 / Intel AMX programming reference: palette 1, tiles of
// up to 16 rows x 64 bytes; TDPBF16PS C[M][N] += sum_k A[M][2k..2k+1] . B[k][N][2] with B in
// "VNNI" pair layout, which is exactly what one vpermw makes of a panel's rows 2i and 2i + 1.
#include "gemm_amx.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593 (see gemm_packed.cc)
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu_features.h"

namespace openlora::cpu::amx {

namespace {

constexpr int kP = PackedMatrix::kPanel;
constexpr int kMaxPanels = 4;  // C tiles 0-3; A is tile 4, B tile 5

bool detect() {
  const char* force = std::getenv("OPENLORA_GEMM");
  if (force && (std::strcmp(force, "avx512") == 0 || std::strcmp(force, "avx512-bf16-dot") == 0 || std::strcmp(force, "avx2") == 0 ||
                std::strcmp(force, "portable") == 0))
    return false;
  const CpuFeatures& f = cpuFeatures();
  return f.amxTile && f.amxBf16 && f.avx512bw && requestAmxPermission();
}

#if defined(__x86_64__)
/**
 * Stage panels [q, q + np) of w as tile B blocks: stage[p][pair][16 columns][2], pairs padded with
 * zeros to k2p. Pair i of panel p = vpermw of its rows 2i, 2i + 1 (an odd k's last row alone).
 */
__attribute__((target("avx512f,avx512bw"))) void stagePanels(const uint16_t* w, int64_t pstride, int64_t k, int np, int64_t k2p,
                                                             uint16_t* stage) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                       18, 2, 17, 1, 16, 0);
  const int64_t k2 = k / 2;
  for (int p = 0; p < np; p++) {
    const uint16_t* wp = w + p * pstride;
    uint16_t* sp = stage + p * k2p * 32;
    for (int64_t i = 0; i < k2; i++) _mm512_storeu_si512(sp + i * 32, _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(wp + i * 2 * kP)));
    int64_t i = k2;
    if (k & 1) {
      const __m256i last = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + (k - 1) * kP));
      _mm512_storeu_si512(sp + i * 32, _mm512_permutexvar_epi16(idx, _mm512_zextsi256_si512(last)));
      i++;
    }
    for (; i < k2p; i++) _mm512_storeu_si512(sp + i * 32, _mm512_setzero_si512());
  }
}

// NOTE(why): GCC's AMX intrinsics are asm statements without a "memory" clobber: nothing stops
// the compiler from moving the staging stores after a tile load, or the reads of `out` before a
// tile store. A compiler barrier on both sides of the tile code keeps the order.
#define OPENLORA_MEMORY_BARRIER() __asm__ __volatile__("" ::: "memory")

/** C tiles 0..np-1 += A (tile 4) x B_p over the k blocks; out [16][np][16]. */
__attribute__((target("amx-tile,amx-bf16"))) void rowTile(const uint32_t* xrow, int64_t ldxp, const uint16_t* stage, int64_t k2p, int np,
                                                          float* out) {
  OPENLORA_MEMORY_BARRIER();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t strideA = ldxp * 4;  // bytes per x row
  for (int64_t b = 0; b < k2p; b += kPairs) {
    _tile_loadd(4, xrow + b, strideA);
    // NOTE(why): tile numbers are immediates, hence the unrolled panels.
    _tile_loadd(5, stage + (0 * k2p + b) * 32, 64);
    _tile_dpbf16ps(0, 4, 5);
    if (np > 1) {
      _tile_loadd(5, stage + (1 * k2p + b) * 32, 64);
      _tile_dpbf16ps(1, 4, 5);
    }
    if (np > 2) {
      _tile_loadd(5, stage + (2 * k2p + b) * 32, 64);
      _tile_dpbf16ps(2, 4, 5);
    }
    if (np > 3) {
      _tile_loadd(5, stage + (3 * k2p + b) * 32, 64);
      _tile_dpbf16ps(3, 4, 5);
    }
  }
  const int64_t strideC = int64_t(np) * kP * 4;
  _tile_stored(0, out, strideC);
  if (np > 1) _tile_stored(1, out + kP, strideC);
  if (np > 2) _tile_stored(2, out + 2 * kP, strideC);
  if (np > 3) _tile_stored(3, out + 3 * kP, strideC);
  OPENLORA_MEMORY_BARRIER();
}

__attribute__((target("amx-tile"))) void loadConfig() {
  TileConfig cfg;
  for (int t = 0; t < 6; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kRows;
  }
  _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile"))) void release() { _tile_release(); }
#endif

}  // namespace

bool usable() {
  static const bool v = detect();
  return v;
}

void gemmPanels(const uint32_t* xp, int64_t ldxp, int64_t m, const PackedMatrix& w, int64_t p0, int64_t p1, const EmitTile& emit) {
#if defined(__x86_64__)
  const int64_t k = w.cols(), pstride = k * kP;
  const int64_t k2p = ((k + 1) / 2 + kPairs - 1) / kPairs * kPairs;
  thread_local std::vector<uint16_t> stage;
  stage.resize(size_t(kMaxPanels * k2p * 32));
  alignas(64) float out[kRows * kMaxPanels * kP];
  loadConfig();
  for (int64_t c0 = p0; c0 < p1; c0 += kMaxPanels) {
    const int np = int(std::min<int64_t>(kMaxPanels, p1 - c0));
    stagePanels(reinterpret_cast<const uint16_t*>(w.panel(c0)), pstride, k, np, k2p, stage.data());
    for (int64_t t0 = 0; t0 < m; t0 += kRows) {
      rowTile(xp + t0 * ldxp, ldxp, stage.data(), k2p, np, out);
      emit(out, int(std::min<int64_t>(kRows, m - t0)), np, t0, c0);
    }
  }
  release();
#else
  (void)xp, (void)ldxp, (void)m, (void)w, (void)p0, (void)p1, (void)emit;
#endif
}

}  // namespace openlora::cpu::amx
