// Checks cpu::pagedAttention against a naive float64 softmax attention over contiguous K/V, on
// random inputs: head_dim 32/64/128 plus odd sizes (portable path), GQA groups 1-16, block
// sizes 1-64, contexts 1-1601 (tile tails, one to four partitions). Also checks that paging, the batch around a row and
// the thread count change no bit of its output, a prompt's rows in one call give each row's bits alone, the vectorised exp against float64 exp, and the
// argument errors. bfloat16 K/V (PagedAttentionRow::kvDtype, EngineOptions.kvCacheDtype): against
// the float64 reference computed on the bf16-rounded K/V, bit-identical to the float32 kernel on
// those rounded values, and bit-stable under paging, batching and threads too. Built and run by test/native/attention.test.ts (with OPENLORA_GEMM=portable
// too). Prints one JSON line and exits 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../../native/cpu/dispatch.h"
#include "../../../native/cpu/paged_attention.h"
#include "check_random.h"

using namespace openlora;
using namespace openlora::cpu;

namespace {

CheckRandom rnd(4321);

double maxRel = 0, maxRelBf16 = 0;
int cases = 0, failures = 0, bitCases = 0, bf16Cases = 0;

void fail(const std::string& what) {
  failures++;
  std::fprintf(stderr, "FAIL %s\n", what.c_str());
}

struct Shape {
  int heads, kvHeads, headDim;
};

/** One sequence: contiguous K/V [nCtx, kvHeads, headDim] and its query rows (the last positions). */
struct Seq {
  int nCtx;
  std::vector<float> k, v;  // [nCtx, kvHeads, hd]
  std::vector<float> q;     // [heads, hd] for the row at position nCtx - 1
};

/** A paged copy of the sequences' K/V: blocks handed out in random order, interleaved. */
struct Pool {
  int blockSize;
  std::vector<float> keys, values;               // [numBlocks, kvHeads, bs, hd]
  std::vector<std::vector<int32_t>> tables;      // per sequence
  bool bf16 = false;                             // read keys16/values16 (bf16 bits) instead
  std::vector<uint16_t> keys16, values16;        // [numBlocks, kvHeads, bs, hd] bf16, when bf16
};

/** The same pool stored as bfloat16 (round to nearest even). */
Pool toBf16(Pool p) {
  p.bf16 = true;
  for (float x : p.keys) p.keys16.push_back(floatToBf16(x));
  for (float x : p.values) p.values16.push_back(floatToBf16(x));
  p.keys.clear();
  p.values.clear();
  return p;
}

/** The sequences with K and V rounded to bfloat16 (what a bf16 pool holds), as float32. */
std::vector<Seq> roundedBf16(std::vector<Seq> seqs) {
  for (Seq& s : seqs) {
    for (float& x : s.k) x = bf16ToFloat(floatToBf16(x));
    for (float& x : s.v) x = bf16ToFloat(floatToBf16(x));
  }
  return seqs;
}

Pool page(const std::vector<Seq>& seqs, const Shape& sh, int bs) {
  Pool p;
  p.blockSize = bs;
  int total = 0;
  for (const Seq& s : seqs) total += (s.nCtx + bs - 1) / bs;
  total += 3;  // unused blocks in between
  std::vector<int32_t> ids(static_cast<size_t>(total));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rnd.rng);
  const size_t blockFloats = size_t(sh.kvHeads) * bs * sh.headDim;
  p.keys = rnd.randn(size_t(total) * blockFloats);  // garbage outside the visible positions
  p.values = rnd.randn(size_t(total) * blockFloats);
  size_t next = 0;
  for (const Seq& s : seqs) {
    std::vector<int32_t> table;
    for (int j = 0; j < s.nCtx; j += bs) table.push_back(ids[next++]);
    for (int j = 0; j < s.nCtx; j++) {
      for (int kh = 0; kh < sh.kvHeads; kh++) {
        const size_t dst = ((size_t(table[size_t(j / bs)]) * sh.kvHeads + kh) * bs + size_t(j % bs)) * sh.headDim;
        const size_t src = (size_t(j) * sh.kvHeads + kh) * sh.headDim;
        std::memcpy(&p.keys[dst], &s.k[src], sizeof(float) * size_t(sh.headDim));
        std::memcpy(&p.values[dst], &s.v[src], sizeof(float) * size_t(sh.headDim));
      }
    }
    p.tables.push_back(table);
  }
  return p;
}

/** Runs pagedAttention over rows = the given sequences of pool (in that order). */
std::vector<float> run(ThreadPool& tp, const std::vector<Seq>& seqs, const std::vector<int>& which, const Pool& p, const Shape& sh) {
  const int64_t m = int64_t(which.size());
  const int64_t ld = int64_t(sh.heads) * sh.headDim;
  std::vector<float> q(size_t(m * ld)), out(size_t(m * ld), NAN);
  std::vector<PagedAttentionRow> rows;
  for (int64_t t = 0; t < m; t++) {
    const Seq& s = seqs[size_t(which[size_t(t)])];
    std::copy(s.q.begin(), s.q.end(), q.begin() + t * ld);
    const void* kc = p.bf16 ? static_cast<const void*>(p.keys16.data()) : p.keys.data();
    const void* vc = p.bf16 ? static_cast<const void*>(p.values16.data()) : p.values.data();
    rows.push_back(PagedAttentionRow{kc, vc, p.tables[size_t(which[size_t(t)])].data(), p.blockSize, s.nCtx,
                                     p.bf16 ? DType::BF16 : DType::F32});
  }
  pagedAttention(tp, q.data(), ld, rows.data(), out.data(), ld, m, sh.heads, sh.kvHeads, sh.headDim);
  return out;
}

/** Naive float64 reference for one sequence's row: [heads, hd]. */
std::vector<double> reference(const Seq& s, const Shape& sh) {
  const int group = sh.heads / sh.kvHeads, hd = sh.headDim;
  std::vector<double> out(size_t(sh.heads) * hd, 0.0);
  std::vector<double> sc(size_t(s.nCtx));
  for (int h = 0; h < sh.heads; h++) {
    const int kh = h / group;
    double mx = -INFINITY;
    for (int j = 0; j < s.nCtx; j++) {
      double d = 0;
      for (int i = 0; i < hd; i++) d += double(s.q[size_t(h) * hd + i]) * s.k[(size_t(j) * sh.kvHeads + kh) * hd + i];
      sc[size_t(j)] = d / std::sqrt(double(hd));
      mx = std::max(mx, sc[size_t(j)]);
    }
    double sum = 0;
    for (int j = 0; j < s.nCtx; j++) sum += (sc[size_t(j)] = std::exp(sc[size_t(j)] - mx));
    for (int j = 0; j < s.nCtx; j++)
      for (int i = 0; i < hd; i++) out[size_t(h) * hd + i] += sc[size_t(j)] / sum * s.v[(size_t(j) * sh.kvHeads + kh) * hd + i];
  }
  return out;
}

/**
 * bfloat16 K/V: each sequence alone (block size 1) against the float64 reference on the rounded
 * K/V and bitwise against the float32 kernel on the rounded values; then block sizes, shuffled
 * batches and 1-3 threads change no bit.
 */
void checkBf16(ThreadPool* pools[3], const Shape& sh, const std::vector<Seq>& seqs) {
  const int hd = sh.headDim;
  const size_t rowFloats = size_t(sh.heads) * hd;
  const std::vector<Seq> rounded = roundedBf16(seqs);
  const Pool base32 = page(rounded, sh, 1);
  const Pool base16 = toBf16(base32);
  std::vector<std::vector<float>> alone;
  for (size_t i = 0; i < seqs.size(); i++) {
    alone.push_back(run(*pools[0], rounded, {int(i)}, base16, sh));
    const std::vector<double> want = reference(rounded[i], sh);
    double scale = 1e-6, err = 0;
    for (double w : want) scale = std::max(scale, std::fabs(w));
    for (size_t j = 0; j < want.size(); j++) err = std::max(err, std::fabs(double(alone[i][j]) - want[j]));
    const double rel = err / scale;
    maxRelBf16 = std::max(maxRelBf16, rel);
    cases++;
    bf16Cases++;
    const std::string where = "bf16 heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kvHeads) + " hd " + std::to_string(hd) +
                              " nCtx " + std::to_string(seqs[i].nCtx);
    if (!(rel <= 2e-5)) fail(where + ": rel err " + std::to_string(rel));
    const std::vector<float> f32 = run(*pools[0], rounded, {int(i)}, base32, sh);
    bitCases++;
    if (std::memcmp(f32.data(), alone[i].data(), sizeof(float) * rowFloats) != 0) fail(where + ": differs from float32 K/V holding the same values");
  }
  std::vector<int> all(seqs.size());
  std::iota(all.begin(), all.end(), 0);
  for (int bs : {1, 3, 16, 33}) {
    const Pool p = toBf16(page(rounded, sh, bs));
    for (int th = 0; th < 3; th++) {
      std::vector<int> order = all;
      std::shuffle(order.begin(), order.end(), rnd.rng);
      const std::vector<float> got = run(*pools[th], rounded, order, p, sh);
      for (size_t t = 0; t < order.size(); t++) {
        bitCases++;
        if (std::memcmp(&got[t * rowFloats], alone[size_t(order[t])].data(), sizeof(float) * rowFloats) != 0)
          fail("bf16 bits differ: heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kvHeads) + " hd " + std::to_string(hd) +
               " nCtx " + std::to_string(seqs[size_t(order[t])].nCtx) + " blockSize " + std::to_string(bs) + " threads " +
               std::to_string(th + 1));
      }
    }
  }
}

/** FNV-1a over bytes: the outputs' fingerprint, compared across kernel variants by the test. */
uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}
uint64_t outputHash = 14695981039346656037ull;

void checkShape(ThreadPool* pools[3], const Shape& sh) {
  const int hd = sh.headDim;
  // Contexts across tile edges (32) and octet edges (8); q scaled up so the softmax is peaked
  // in places (exercises the running-max rescale).
  const int ctxs[] = {1, 2, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 140, 257, 300, 512, 513, 1100, 1601};
  std::vector<Seq> seqs;
  for (int c : ctxs) {
    Seq s;
    s.nCtx = c;
    s.k = rnd.randn(size_t(c) * sh.kvHeads * hd);
    s.v = rnd.randn(size_t(c) * sh.kvHeads * hd);
    s.q = rnd.randn(size_t(sh.heads) * hd, c % 2 ? 1.0f : 4.0f);
    seqs.push_back(std::move(s));
  }
  const size_t rowFloats = size_t(sh.heads) * hd;
  std::vector<int> all(seqs.size());
  std::iota(all.begin(), all.end(), 0);
  // Baseline: every sequence alone, block size 1, one thread.
  const Pool base = page(seqs, sh, 1);
  std::vector<std::vector<float>> alone;
  for (size_t i = 0; i < seqs.size(); i++) {
    alone.push_back(run(*pools[0], seqs, {int(i)}, base, sh));
    const std::vector<double> want = reference(seqs[i], sh);
    double scale = 1e-6, err = 0;
    for (double w : want) scale = std::max(scale, std::fabs(w));
    for (size_t j = 0; j < want.size(); j++) err = std::max(err, std::fabs(double(alone[i][j]) - want[j]));
    const double rel = err / scale;
    maxRel = std::max(maxRel, rel);
    cases++;
    if (!(rel <= 2e-5))
      fail("heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kvHeads) + " hd " + std::to_string(hd) + " nCtx " +
           std::to_string(seqs[i].nCtx) + ": rel err " + std::to_string(rel));
  }
  for (const auto& row : alone) outputHash = fnv1a(outputHash, row.data(), sizeof(float) * row.size());
  // Every block size, the whole batch in shuffled order, 1-3 threads: bit-identical to alone.
  for (int bs : {1, 3, 4, 8, 16, 32, 33, 64}) {
    const Pool p = page(seqs, sh, bs);
    for (int th = 0; th < 3; th++) {
      std::vector<int> order = all;
      std::shuffle(order.begin(), order.end(), rnd.rng);
      order.push_back(order[0]);  // a row twice in one batch
      const std::vector<float> got = run(*pools[th], seqs, order, p, sh);
      for (size_t t = 0; t < order.size(); t++) {
        bitCases++;
        if (std::memcmp(&got[t * rowFloats], alone[size_t(order[t])].data(), sizeof(float) * rowFloats) != 0)
          fail("bits differ: heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kvHeads) + " hd " + std::to_string(hd) +
               " nCtx " + std::to_string(seqs[size_t(order[t])].nCtx) + " blockSize " + std::to_string(bs) + " threads " +
               std::to_string(th + 1));
      }
    }
  }
  checkBf16(pools, sh, seqs);
}

/**
 * A prompt's rows in one call (the AVX2 path runs up to 4 consecutive rows of one sequence as one
 * task) give every row the bits it gets alone: chunks starting at 0, mid-tile and at the last
 * position, block sizes 1 / 16 / 32, float32 and bf16 K/V, a sliding window (rows not grouped),
 * two sequences' chunks and a decode row in one batch, 1-3 threads.
 */
void checkPromptRows(ThreadPool* pools[3], const Shape& sh, int L, std::initializer_list<int> chunkStarts, std::initializer_list<int> windows) {
  const int hd = sh.headDim;
  const int64_t ld = int64_t(sh.heads) * hd;
  Seq s;
  s.nCtx = L;
  s.k = rnd.randn(size_t(L) * sh.kvHeads * hd);
  s.v = rnd.randn(size_t(L) * sh.kvHeads * hd);
  const std::vector<float> qs = rnd.randn(size_t(L) * size_t(ld), 3.0f);  // the query of every position
  for (int bs : {1, 16, 32}) {
    const Pool f32 = page({s, s}, sh, bs);
    for (const Pool& p : {f32, toBf16(f32)}) {
      const void* kc = p.bf16 ? static_cast<const void*>(p.keys16.data()) : p.keys.data();
      const void* vc = p.bf16 ? static_cast<const void*>(p.values16.data()) : p.values.data();
      const DType dt = p.bf16 ? DType::BF16 : DType::F32;
      for (int window : windows) {
        for (int p0 : chunkStarts) {
          // Rows: sequence 0's positions [p0, L), a decode row of sequence 1, sequence 1's [p0, L).
          std::vector<PagedAttentionRow> rows;
          std::vector<float> q;
          for (int part = 0; part < 3; part++) {
            const int seq = part == 0 ? 0 : 1, from = part == 1 ? L - 1 : p0, to = part == 1 ? L : L;
            for (int pos = from; pos < to; pos++) {
              const int start = window > 0 ? std::max(0, pos + 1 - window) : 0;
              rows.push_back(PagedAttentionRow{kc, vc, p.tables[size_t(seq)].data(), bs, pos + 1, dt, start});
              q.insert(q.end(), qs.begin() + pos * ld, qs.begin() + (pos + 1) * ld);
            }
          }
          const int64_t m = int64_t(rows.size());
          const int th = int(rows.size() % 3);
          std::vector<float> got(size_t(m * ld), NAN), alone(size_t(ld), NAN);
          pagedAttention(*pools[th], q.data(), ld, rows.data(), got.data(), ld, m, sh.heads, sh.kvHeads, hd);
          if (L > kAttentionPartition) {  // the same call in slices of one group each: the same bits
            std::vector<float> sliced(got.size(), NAN);
            const int64_t was = setAttentionPartialLimitForTest(1);
            pagedAttention(*pools[2 - th], q.data(), ld, rows.data(), sliced.data(), ld, m, sh.heads, sh.kvHeads, hd);
            setAttentionPartialLimitForTest(was);
            bitCases++;
            if (std::memcmp(sliced.data(), got.data(), sizeof(float) * got.size()) != 0)
              fail("a call run in slices differs: heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kvHeads) + " hd " +
                   std::to_string(hd) + " blockSize " + std::to_string(bs) + " window " + std::to_string(window));
          }
          for (int64_t t = 0; t < m; t++) {
            pagedAttention(*pools[0], q.data() + t * ld, ld, &rows[size_t(t)], alone.data(), ld, 1, sh.heads, sh.kvHeads, hd);
            bitCases++;
            if (std::memcmp(&got[size_t(t * ld)], alone.data(), sizeof(float) * size_t(ld)) != 0)
              fail("prompt rows differ from alone: heads " + std::to_string(sh.heads) + "/" + std::to_string(sh.kvHeads) + " hd " +
                   std::to_string(hd) + " blockSize " + std::to_string(bs) + (p.bf16 ? " bf16" : " f32") + " window " +
                   std::to_string(window) + " chunk from " + std::to_string(p0) + " row " + std::to_string(t));
          }
        }
      }
    }
  }
}

double ulpDiff(float got, double want) {
  const float w = float(want);
  const float ulp = std::nextafter(w, INFINITY) - w;
  return std::fabs(double(got) - want) / double(ulp);
}

double checkExp() {
  std::vector<float> x;
  for (int i = 0; i <= 2000000; i++) x.push_back(-87.0f * float(i) / 2000000.0f);
  for (float v : {0.0f, -0.0f, -1e-30f, -1e-7f, -0.5f, -0.34657359f, -0.34657360f, -1.0f, -10.0f, -86.9f}) x.push_back(v);
  std::vector<float> y(x.size());
  attentionExpForTest(x.data(), y.data(), int64_t(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); i++) worst = std::max(worst, ulpDiff(y[i], std::exp(double(x[i]))));
  cases++;
  if (!(worst <= 2.0)) fail("exp: max error " + std::to_string(worst) + " ulp");
  // Below ln(2^-126) the AVX2 exp gives 0, std::exp a denormal: either is fine.
  const float special[] = {0.0f, -INFINITY, -88.0f, -100.0f, -1e30f, NAN, -87.0f};
  float ys[7];
  attentionExpForTest(special, ys, 7);
  cases++;
  if (!(ys[0] == 1.0f && ys[1] == 0.0f && ys[2] >= 0.0f && ys[2] < 1e-37f && ys[3] >= 0.0f && ys[3] < 1e-37f && ys[4] == 0.0f && std::isnan(ys[5]) && ys[6] > 0.0f))
    fail("exp special values: " + std::to_string(ys[0]) + " " + std::to_string(ys[1]) + " " + std::to_string(ys[2]) + " " +
         std::to_string(ys[5]) + " " + std::to_string(ys[6]));
  return worst;
}

void checkErrors(ThreadPool& tp) {
  float q[64] = {}, out[64] = {}, kv[64] = {};
  const int32_t table[1] = {0};
  PagedAttentionRow row{kv, kv, table, 1, 1};
  auto expectThrow = [&](const char* what, const char* needle, auto fn) {
    cases++;
    try {
      fn();
      fail(std::string("no error for ") + what);
    } catch (const std::invalid_argument& e) {
      if (!std::strstr(e.what(), needle)) fail(std::string(what) + ": unexpected message " + e.what());
    }
  };
  expectThrow("heads % kvHeads", "multiple of numKvHeads", [&] { pagedAttention(tp, q, 24, &row, out, 24, 1, 3, 2, 8); });
  expectThrow("kvHeads 0", "multiple of numKvHeads", [&] { pagedAttention(tp, q, 8, &row, out, 8, 1, 1, 0, 8); });
  expectThrow("headDim 0", "headDim", [&] { pagedAttention(tp, q, 8, &row, out, 8, 1, 1, 1, 0); });
  PagedAttentionRow empty{kv, kv, table, 1, 0};
  expectThrow("nCtx 0", "nCtx 0", [&] { pagedAttention(tp, q, 8, &empty, out, 8, 1, 1, 1, 8); });
  PagedAttentionRow noBlock{kv, kv, table, 0, 1};
  expectThrow("blockSize 0", "blockSize 0", [&] { pagedAttention(tp, q, 8, &noBlock, out, 8, 1, 1, 1, 8); });
}

}  // namespace

int main() {
  ThreadPool p1(1), p2(2), p3(3);
  ThreadPool* pools[3] = {&p1, &p2, &p3};
  // (heads, kvHeads, headDim): demo model, real-model shapes (GQA 1-8), a group over 8 (two
  // tasks per KV head), odd head dims (portable path: not a multiple of 8).
  const Shape shapes[] = {{8, 4, 32}, {8, 8, 64}, {16, 2, 128}, {32, 4, 128}, {12, 4, 64}, {6, 2, 32}, {7, 1, 24},
                          {16, 1, 64}, {20, 2, 32}, {12, 4, 40}, {6, 3, 20}, {2, 1, 3}};
  for (const Shape& sh : shapes) checkShape(pools, sh);
  for (const Shape& sh : {shapes[0], shapes[2], shapes[4], shapes[9]}) checkPromptRows(pools, sh, 150, {0, 37, 149}, {0, 40});
  // Across the first partition edge (512): rows of one group in one and two partitions; a window
  // of 520 moves the partitions with the window's start.
  for (const Shape& sh : {shapes[0], shapes[4], shapes[9]}) checkPromptRows(pools, sh, 530, {505, 511, 529}, {0, 520});
  const double expUlp = checkExp();
  checkErrors(p2);
  // Rounding: nearest even, ties, infinities, NaN, overflow to infinity; widening is exact.
  cases++;
  const struct { float x; uint16_t want; } rnd[] = {{1.0f, 0x3f80}, {-2.0f, 0xc000}, {1.00390625f, 0x3f80} /* tie: even */,
                                                    {1.01171875f, 0x3f82} /* tie: even */, {1.0078125f, 0x3f81}, {INFINITY, 0x7f80},
                                                    {-INFINITY, 0xff80}, {3.4e38f, 0x7f80}, {0.0f, 0x0000}, {-0.0f, 0x8000}};
  for (const auto& r : rnd)
    if (floatToBf16(r.x) != r.want) fail("floatToBf16(" + std::to_string(r.x) + ") = " + std::to_string(floatToBf16(r.x)));
  if (!std::isnan(bf16ToFloat(floatToBf16(NAN))) || bf16ToFloat(0x3f81) != 1.0078125f) fail("bf16 NaN / widening");
  std::printf("{\"cases\": %d, \"bitCases\": %d, \"bf16Cases\": %d, \"failures\": %d, \"maxRelErr\": %g, \"maxRelErrBf16\": %g, "
              "\"expMaxUlp\": %g, \"kernel\": \"%s\", \"outputHash\": \"%016llx\"}\n",
              cases, bitCases, bf16Cases, failures, maxRel, maxRelBf16, expUlp, attentionKernelName(32), (unsigned long long)outputHash);
  return failures == 0 ? 0 : 1;
}
