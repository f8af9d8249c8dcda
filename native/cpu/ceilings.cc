// See ceilings.h. Peaks are in-register loops with enough independent accumulator chains to
// cover the FMA latency on every x86 core we target (4-5 cycles, 2 ports: >= 10 chains); the
// read bandwidth is a sum of vector loads (no stores), each thread over its own contiguous part,
// all threads released together and timed to the last one done.
#include "ceilings.h"

#include "cpu_features.h"
#include "dispatch.h"  // kStreamPrefetchBytes
#include "gemm_amx.h"
#include "large_pages.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC bug 105593 (see gemm_packed.cc), and the
#pragma GCC diagnostic ignored "-Wuninitialized"        // same in _mm512_reduce_add_ps
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <thread>
#include <vector>


namespace openlora::cpu {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

/**
 * Run fn(t) on `threads` threads released at once; returns the wall time from the release to the
 * last thread's end (seconds).
 */
double timedOnThreads(int threads, const std::function<void(int)>& fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> end(size_t(threads), 0.0);
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; t++) {
    ts.emplace_back([&, t] {
      ready++;
      while (!go.load(std::memory_order_acquire)) {
      }
      fn(t);
      end[size_t(t)] = now();
    });
  }
  while (ready.load() < threads - 1) std::this_thread::yield();
  const double t0 = now();
  go.store(true, std::memory_order_release);
  fn(0);
  end[0] = now();
  for (auto& th : ts) th.join();
  return *std::max_element(end.begin(), end.end()) - t0;
}

// --- read bandwidth -----------------------------------------------------------------------

__attribute__((target("avx512f"))) uint64_t readAvx512(const char* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  return uint64_t(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
}

__attribute__((target("avx2"))) uint64_t readAvx2(const char* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) uint64_t v[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return v[0] + v[1] + v[2] + v[3];
}

// NOTE(why): one hardware-prefetched stream a thread is not the most a core reads: the one-row
// products read four streams a thread, software-prefetched (dispatch.h kStreamPrefetchBytes), and
// on a 2-vCPU Zen 5 EPYC that reached 62-69 GB/s where one plain stream a thread read 46-53. The
// read ceiling is the best of both patterns, so no kernel's fraction of it is flattered.

/** Four streams (the quarters of [p, p + n)) read interleaved, each prefetched kStreamPrefetchBytes ahead. */
__attribute__((target("avx512f"))) uint64_t readStreamsAvx512(const char* p, size_t n) {
  const size_t q = (n / 4) & ~size_t(127);
  __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
  for (size_t i = 0; i + 128 <= q; i += 128) {
    for (int s = 0; s < 4; s++) {
      _mm_prefetch(p + size_t(s) * q + i + kStreamPrefetchBytes, _MM_HINT_T0);
      _mm_prefetch(p + size_t(s) * q + i + kStreamPrefetchBytes + 64, _MM_HINT_T0);
    }
    for (int s = 0; s < 4; s++) a[s] = _mm512_add_epi64(a[s], _mm512_loadu_si512(p + size_t(s) * q + i));
    for (int s = 0; s < 4; s++) a[s] = _mm512_add_epi64(a[s], _mm512_loadu_si512(p + size_t(s) * q + i + 64));
  }
  return uint64_t(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a[0], a[1]), _mm512_add_epi64(a[2], a[3]))));
}

/** readStreamsAvx512 with 32-byte loads. */
__attribute__((target("avx2"))) uint64_t readStreamsAvx2(const char* p, size_t n) {
  const size_t q = (n / 4) & ~size_t(127);
  __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
  for (size_t i = 0; i + 128 <= q; i += 128) {
    for (int s = 0; s < 4; s++) {
      _mm_prefetch(p + size_t(s) * q + i + kStreamPrefetchBytes, _MM_HINT_T0);
      _mm_prefetch(p + size_t(s) * q + i + kStreamPrefetchBytes + 64, _MM_HINT_T0);
    }
    for (int off = 0; off < 128; off += 32)
      for (int s = 0; s < 4; s++) a[s] = _mm256_add_epi64(a[s], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + size_t(s) * q + i + off)));
  }
  alignas(32) uint64_t v[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), _mm256_add_epi64(_mm256_add_epi64(a[0], a[1]), _mm256_add_epi64(a[2], a[3])));
  return v[0] + v[1] + v[2] + v[3];
}

uint64_t readScalar(const char* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    s += v;
  }
  return s;
}

double readBandwidth(const char* buf, size_t bytes, int threads, int reps) {
  const CpuFeatures& f = cpuFeatures();
  using Read = uint64_t (*)(const char*, size_t);
  const Read plain = f.avx512f ? readAvx512 : f.avx2 ? readAvx2 : readScalar;
  const Read streams = f.avx512f ? readStreamsAvx512 : f.avx2 ? readStreamsAvx2 : nullptr;
  std::atomic<uint64_t> sink{0};
  double best = 1e30;
  const size_t part = (bytes / size_t(threads)) & ~size_t(4095);
  for (int r = 0; r < reps; r++) {  // the two patterns alternate, so both see the same moments of a shared machine
    for (Read read : {plain, streams}) {
      if (read) best = std::min(best, timedOnThreads(threads, [&](int t) { sink += read(buf + size_t(t) * part, part); }));
    }
  }
  if (sink.load() == 42) std::fputs("", stderr);  // keeps the sums live
  return double(part) * threads / best / 1e9;
}

// --- in-register peaks --------------------------------------------------------------------

constexpr int64_t kIters = 1 << 20;  // ~4 ms per pass at 4 GHz: short passes, best of many, so a shared
                                     // machine's preemptions fall between them

__attribute__((target("avx2,fma"))) float fmaAvx2Loop(int64_t iters) {
  __m256 acc[12];
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps(float(i));
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < 12; i++) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  return _mm256_cvtss_f32(acc[0]);
}

__attribute__((target("avx512f"))) float fmaAvx512Loop(int64_t iters) {
  __m512 acc[16];
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps(float(i));
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx512f,avx512bf16"))) float bf16DotLoop(int64_t iters) {
  __m512 acc[16];
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a83);  // 1.0, ~1e-3
  for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps(float(i));
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  return _mm512_reduce_add_ps(acc[0]);
}

#if defined(__x86_64__)
__attribute__((target("amx-tile,amx-bf16"))) float amxLoop(int64_t iters) {
  amx::TileConfig cfg;  // tiles 0-3 C [16 x 16 fp32], 4-5 A [16 x 32 bf16], 6-7 B [16 x 32 bf16 pairs]
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  alignas(64) uint16_t ab[16 * 32];
  for (int i = 0; i < 16 * 32; i++) ab[i] = uint16_t(0x3c00 + (i & 63));  // small positive bf16 values
  alignas(64) float c[16 * 16];
  __asm__ __volatile__("" ::: "memory");  // ab is written before the tile loads read it
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  _tile_loadd(6, ab, 64);
  _tile_loadd(7, ab, 64);
  for (int64_t it = 0; it < iters; it++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  __asm__ __volatile__("" ::: "memory");  // the tile store is an asm without a memory clobber
  _tile_release();
  return c[0];
}
#endif

/** GFLOP/s of `loop` on 1 and n threads; flopsPerIter counts 2 per multiply-add. */
void peak(int threads, float (*loop)(int64_t), int64_t iters, double flopsPerIter, double* one, double* all) {
  std::atomic<int> sink{0};
  auto run = [&](int n) {
    double best = 1e30;
    for (int r = 0; r < 10; r++) best = std::min(best, timedOnThreads(n, [&](int) { sink += int(loop(iters) == 42.0f); }));
    return double(iters) * flopsPerIter * n / best / 1e9;
  };
  loop(iters / 16);  // warm-up (frequency, AVX-512 / AMX power-up)
  *one = run(1);
  *all = threads > 1 ? run(threads) : *one;
}

std::string cpuModelName() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? "" : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "";
}

std::string jsonStr(const std::string& v) {
  std::string o = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o + "\"";
}

std::string jsonNum(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

}  // namespace

Ceilings measureCeilings(int threads, int bufferMiB, int reps) {
  Ceilings c;
  c.threads = std::max(1, threads);
  c.cpuModel = cpuModelName();
  const CpuFeatures& f = cpuFeatures();
  c.features = describeCpuFeatures(f);
  c.bufferMiB = bufferMiB;

  const size_t bytes = size_t(bufferMiB) << 20;
  // NOTE(why): in 2 MiB pages, as the weights are (large_pages.h): with 4 KiB pages the read loop
  // paid a TLB miss per page that the weight stream does not, and decode measured up to 1.25x
  // this "ceiling" on the Zen 3.
  char* buf = nullptr;
  try {
    buf = static_cast<char*>(LargePageAllocator<uint8_t>::largePageAlloc(bytes));
  } catch (const std::bad_alloc&) {
    buf = nullptr;
  }
  if (buf) {
    // Written by the threads that read it (first touch places pages near them).
    timedOnThreads(c.threads, [&](int t) {
      const size_t part = bytes / size_t(c.threads);
      for (size_t i = 0; i < part; i += 8) {
        const uint64_t v = i * 0x9E3779B97F4A7C15ull;
        std::memcpy(buf + size_t(t) * part + i, &v, 8);
      }
    });
    c.readGBps1 = readBandwidth(buf, bytes, 1, reps);
    c.readGBpsN = c.threads > 1 ? readBandwidth(buf, bytes, c.threads, reps) : c.readGBps1;
    LargePageAllocator<uint8_t>::largePageFree(buf, bytes);
  }
  if (f.avx2 && f.fma) peak(c.threads, fmaAvx2Loop, kIters, 12.0 * 8 * 2, &c.fmaAvx2Gflops1, &c.fmaAvx2GflopsN);
  if (f.avx512f) peak(c.threads, fmaAvx512Loop, kIters, 16.0 * 16 * 2, &c.fmaAvx512Gflops1, &c.fmaAvx512GflopsN);
  else c.avx512Why = "no avx512f";
  if (f.avx512bf16) peak(c.threads, bf16DotLoop, kIters, 16.0 * 32 * 2, &c.bf16DotGflops1, &c.bf16DotGflopsN);
  else c.bf16Why = "no avx512_bf16";
#if defined(__x86_64__)
  if (requestAmxPermission(&c.amxWhy)) peak(c.threads, amxLoop, kIters / 8, 4.0 * 16 * 16 * 32 * 2, &c.amxBf16Gflops1, &c.amxBf16GflopsN);
#else
  c.amxWhy = "not x86-64";
#endif
  return c;
}

std::string Ceilings::toJson() const {
  std::string j = "{\"cpu_model\": " + jsonStr(cpuModel) + ", \"features\": " + jsonStr(features) +
                  ", \"threads\": " + std::to_string(threads) + ", \"buffer_MiB\": " + jsonNum(bufferMiB);
  j += ", \"read_GBps_1t\": " + jsonNum(readGBps1) + ", \"read_GBps\": " + jsonNum(readGBpsN);
  j += ", \"fp32_fma_avx2_GFLOPs_1t\": " + jsonNum(fmaAvx2Gflops1) + ", \"fp32_fma_avx2_GFLOPs\": " + jsonNum(fmaAvx2GflopsN);
  j += ", \"fp32_fma_avx512_GFLOPs_1t\": " + jsonNum(fmaAvx512Gflops1) + ", \"fp32_fma_avx512_GFLOPs\": " + jsonNum(fmaAvx512GflopsN);
  j += ", \"bf16_dot_avx512_GFLOPs_1t\": " + jsonNum(bf16DotGflops1) + ", \"bf16_dot_avx512_GFLOPs\": " + jsonNum(bf16DotGflopsN);
  j += ", \"amx_bf16_GFLOPs_1t\": " + jsonNum(amxBf16Gflops1) + ", \"amx_bf16_GFLOPs\": " + jsonNum(amxBf16GflopsN);
  j += ", \"missing\": {";
  std::string m;
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    m += std::string(m.empty() ? "" : ", ") + "\"" + k + "\": " + jsonStr(v);
  };
  add("avx512", avx512Why);
  add("bf16_dot", bf16Why);
  add("amx_bf16", amxWhy);
  return j + m + "}}";
}

}  // namespace openlora::cpu
