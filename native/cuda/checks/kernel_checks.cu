// Standalone check of every native/cuda kernel against a naive CPU loop on random inputs (never
// zeros), at the demo model's shapes (hidden 256, heads 8/4, head_dim 32, inter 704) and
// Llama-3-8B's (4096, 32/8, 128, 14336, LoRA rank 16). Prints max abs / rel error and PASS/FAIL
// per check; exit 0 all pass, 1 a failure, 2 no CUDA device.
//
// Build (see native/cuda/checks/Makefile):
//   make -C native/cuda/checks      -> build/checks/kernel_checks
// Run:  build/checks/kernel_checks [--quick]   (--quick: demo shapes only)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../bgmv.cuh"
#include "../cublas_loader.cuh"
#include "../embedding.cuh"
#include "../gemm.cuh"
#include "../paged_attention.cuh"
#include "../prefill_attention.cuh"
#include "../quant_fp8.cuh"
#include "../quant_int8.cuh"
#include "../reshape_and_cache.cuh"
#include "../rms_norm.cuh"
#include "../rope.cuh"
#include "../sampling.cuh"
#include "../sgmv.cuh"
#include "../swiglu.cuh"

using namespace openlora::cuda;

namespace {

// ---------------------------------------------------------------------------------------------
// Host helpers

std::mt19937 g_rng(1234);
int g_failures = 0;

std::vector<float> randomVec(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = d(g_rng);
    while (x == 0.0f);  // never zeros
  }
  return v;
}

float roundTo(DType t, float v) {
  if (t == DType::BF16) return __bfloat162float(__float2bfloat16(v));
  if (t == DType::F16) return __half2float(__float2half(v));
  return v;
}
void roundAll(DType t, std::vector<float>& v) {
  for (auto& x : v) x = roundTo(t, x);
}

/** A device buffer holding host floats converted to dtype t. */
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  Dev() = default;
  explicit Dev(size_t b) : bytes(b) {
    if (cudaMalloc(&p, b) != cudaSuccess) {
      std::fprintf(stderr, "cudaMalloc(%zu) failed\n", b);
      std::exit(1);
    }
    cudaMemset(p, 0, b);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() {
    if (p) cudaFree(p);
  }
  template <typename U>
  U* as() const {
    return static_cast<U*>(p);
  }
};

Dev* upload(DType t, const std::vector<float>& v) {
  Dev* d = new Dev(v.size() * size_t(dtype_size(t)) + 16);
  if (t == DType::F32) {
    cudaMemcpy(d->p, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
  } else if (t == DType::BF16) {
    std::vector<__nv_bfloat16> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = __float2bfloat16(v[i]);
    cudaMemcpy(d->p, h.data(), h.size() * 2, cudaMemcpyHostToDevice);
  } else {
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = __float2half(v[i]);
    cudaMemcpy(d->p, h.data(), h.size() * 2, cudaMemcpyHostToDevice);
  }
  return d;
}
template <typename U>
Dev* uploadRaw(const std::vector<U>& v) {
  Dev* d = new Dev(v.size() * sizeof(U) + 16);
  cudaMemcpy(d->p, v.data(), v.size() * sizeof(U), cudaMemcpyHostToDevice);
  return d;
}
std::vector<float> download(DType t, const Dev* d, size_t n) {
  std::vector<float> out(n);
  if (t == DType::F32) {
    cudaMemcpy(out.data(), d->p, n * 4, cudaMemcpyDeviceToHost);
  } else if (t == DType::BF16) {
    std::vector<__nv_bfloat16> h(n);
    cudaMemcpy(h.data(), d->p, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++) out[i] = __bfloat162float(h[i]);
  } else {
    std::vector<__half> h(n);
    cudaMemcpy(h.data(), d->p, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++) out[i] = __half2float(h[i]);
  }
  return out;
}
template <typename U>
std::vector<U> downloadRaw(const Dev* d, size_t n) {
  std::vector<U> out(n);
  cudaMemcpy(out.data(), d->p, n * sizeof(U), cudaMemcpyDeviceToHost);
  return out;
}

bool launched(const char* name, cudaError_t err) {
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    std::printf("FAIL  %-44s launch: %s (%s)\n", name, cudaGetErrorString(err), last_error_message());
    g_failures++;
    return false;
  }
  return true;
}

/** Compare got vs ref: pass when |got - ref| <= atol + rtol |ref| everywhere. */
void report(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref, float atol, float rtol) {
  double maxAbs = 0, maxRel = 0;
  bool ok = got.size() == ref.size();
  size_t bad = 0;
  for (size_t i = 0; ok && i < ref.size(); i++) {
    const double e = std::fabs(double(got[i]) - double(ref[i]));
    if (!(e <= atol + rtol * std::fabs(double(ref[i])))) {
      if (bad == 0) std::printf("      first mismatch at %zu: got %g ref %g\n", i, double(got[i]), double(ref[i]));
      bad++;
    }
    if (!(e == e)) maxAbs = INFINITY;
    maxAbs = std::max(maxAbs, e);
    maxRel = std::max(maxRel, e / std::max(std::fabs(double(ref[i])), 1e-3));
  }
  ok = ok && bad == 0;
  if (!ok) g_failures++;
  std::printf("%s  %-44s max_abs %.3e  max_rel %.3e  (atol %.0e rtol %.0e, n=%zu)\n", ok ? "PASS" : "FAIL", name.c_str(),
              maxAbs, maxRel, double(atol), double(rtol), ref.size());
}

void reportBool(const std::string& name, bool ok, const std::string& detail) {
  if (!ok) g_failures++;
  std::printf("%s  %-44s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

struct Shape {
  const char* name;
  int hidden, heads, kvHeads, headDim, inter, rank, vocab;
};

// ---------------------------------------------------------------------------------------------
// Element-wise kernels

void checkEmbedding(const Shape& s, DType t) {
  const int vocab = 1000, n = 37;
  auto table = randomVec(size_t(vocab) * s.hidden);
  roundAll(t, table);
  std::vector<int32_t> ids(n);
  for (auto& i : ids) i = int(g_rng() % vocab);
  ids[3] = -1;  // out of range: zero row
  std::unique_ptr<Dev> dT(upload(t, table)), dI(uploadRaw(ids)), dO(new Dev(size_t(n) * s.hidden * 4));
  if (!launched("embedding", launch_embedding(dI->as<int32_t>(), dT->p, dO->p, s.hidden, n, s.hidden, vocab, t, nullptr))) return;
  std::vector<float> ref(size_t(n) * s.hidden, 0.0f);
  for (int r = 0; r < n; r++)
    if (ids[r] >= 0)
      for (int j = 0; j < s.hidden; j++) ref[size_t(r) * s.hidden + j] = table[size_t(ids[r]) * s.hidden + j];
  report(std::string("embedding ") + dtype_name(t) + " " + s.name, download(t, dO.get(), ref.size()), ref, 0, 0);
}

void checkRmsNorm(const Shape& s, DType t) {
  const int rows = 19, H = s.hidden;
  const float eps = 1e-5f;
  auto x = randomVec(size_t(rows) * H, -2, 2), w = randomVec(H, 0.5f, 1.5f), res = randomVec(size_t(rows) * H, -2, 2);
  roundAll(t, x), roundAll(t, w), roundAll(t, res);
  std::unique_ptr<Dev> dX(upload(t, x)), dW(upload(t, w)), dY(new Dev(x.size() * 4)), dR(upload(t, res));
  auto norm = [&](const std::vector<float>& in, std::vector<float>& out) {
    for (int r = 0; r < rows; r++) {
      double ss = 0;
      for (int j = 0; j < H; j++) ss += double(in[size_t(r) * H + j]) * in[size_t(r) * H + j];
      const float inv = float(1.0 / std::sqrt(ss / H + eps));
      for (int j = 0; j < H; j++) out[size_t(r) * H + j] = roundTo(t, w[j] * roundTo(t, in[size_t(r) * H + j] * inv));
    }
  };
  const float tol = t == DType::F32 ? 1e-5f : 1.6e-2f;
  if (launched("rms_norm", launch_rms_norm(dX->p, H, dW->p, dY->p, H, rows, H, eps, t, nullptr))) {
    std::vector<float> ref(x.size());
    norm(x, ref);
    report(std::string("rms_norm ") + dtype_name(t) + " " + s.name, download(t, dY.get(), ref.size()), ref, tol, tol);
  }
  if (launched("fused_add_rms_norm",
               launch_fused_add_rms_norm(dX->p, H, dR->p, dW->p, dY->p, H, rows, H, eps, t, nullptr))) {
    std::vector<float> sum(x.size()), ref(x.size());
    for (size_t i = 0; i < x.size(); i++) sum[i] = roundTo(t, res[i] + x[i]);
    norm(sum, ref);
    report(std::string("fused_add_rms_norm residual ") + dtype_name(t) + " " + s.name, download(t, dR.get(), sum.size()), sum,
           0, 0);
    report(std::string("fused_add_rms_norm out ") + dtype_name(t) + " " + s.name, download(t, dY.get(), ref.size()), ref,
           tol, tol);
  }
}

void checkRope(const Shape& s, DType t, bool llama3) {
  const int n = 23, D = s.headDim, ldq = s.heads * D, ldk = s.kvHeads * D;
  std::vector<float> inv(size_t(D / 2));
  if (llama3) rope_inv_freq(500000.0, D, RopeScalingKind::Llama3, 8.0, 1.0, 4.0, 8192, inv.data());
  else rope_inv_freq(10000.0, D, RopeScalingKind::None, 1, 1, 1, 1, inv.data());
  auto q = randomVec(size_t(n) * ldq), k = randomVec(size_t(n) * ldk);
  roundAll(t, q), roundAll(t, k);
  std::vector<int32_t> pos(n);
  for (auto& p : pos) p = int(g_rng() % (llama3 ? 131072 : 2048));
  std::unique_ptr<Dev> dQ(upload(t, q)), dK(upload(t, k)), dP(uploadRaw(pos)), dF(uploadRaw(inv));
  if (!launched("rope", launch_rope(dQ->p, ldq, dK->p, ldk, dP->as<int32_t>(), dF->as<float>(), n, s.heads, s.kvHeads, D,
                                    t, nullptr)))
    return;
  auto rot = [&](std::vector<float>& x, int heads, int ld) {
    for (int r = 0; r < n; r++)
      for (int h = 0; h < heads; h++)
        for (int j = 0; j < D / 2; j++) {
          float* p = x.data() + size_t(r) * ld + size_t(h) * D;
          const double a = double(float(pos[r]) * inv[j]);  // fp32 angle, as HF
          const double x1 = p[j], x2 = p[j + D / 2];
          p[j] = float(x1 * std::cos(a) - x2 * std::sin(a));
          p[j + D / 2] = float(x2 * std::cos(a) + x1 * std::sin(a));
        }
  };
  rot(q, s.heads, ldq), rot(k, s.kvHeads, ldk);
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  const std::string tag = std::string(llama3 ? "rope llama3 " : "rope ") + dtype_name(t) + " " + s.name;
  report(tag + " q", download(t, dQ.get(), q.size()), q, tol, tol);
  report(tag + " k", download(t, dK.get(), k.size()), k, tol, tol);
}

void checkSwiglu(const Shape& s, DType t) {
  const int rows = 13, I = s.inter;
  auto gu = randomVec(size_t(rows) * 2 * I, -4, 4);  // fused [rows, 2 * inter]
  roundAll(t, gu);
  std::unique_ptr<Dev> dG(upload(t, gu)), dO(new Dev(size_t(rows) * I * 4));
  if (!launched("silu_mul", launch_silu_mul(dG->p, 2 * I, static_cast<char*>(dG->p) + size_t(I) * dtype_size(t), 2 * I,
                                            dO->p, I, rows, I, t, nullptr)))
    return;
  std::vector<float> ref(size_t(rows) * I);
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < I; i++) {
      const double g = gu[size_t(r) * 2 * I + i], u = gu[size_t(r) * 2 * I + I + i];
      ref[size_t(r) * I + i] = float(g / (1 + std::exp(-g)) * u);
    }
  const float tol = t == DType::F32 ? 1e-5f : 1e-2f;
  report(std::string("silu_mul ") + dtype_name(t) + " " + s.name, download(t, dO.get(), ref.size()), ref, tol, tol);
}

// ---------------------------------------------------------------------------------------------
// KV cache and attention

/** A paged pool with shuffled block ids, filled through launch_reshape_and_cache. */
struct Pool {
  int numBlocks, blockSize, kvHeads, D;
  std::vector<float> k, v;  // host mirror [num_blocks, kv_heads, block_size, D]
  std::unique_ptr<Dev> dk, dv;
};

/** Sequences of context ctx[s]; returns the host block tables [S, maxBlocks]. */
std::vector<int32_t> fillPool(Pool& p, DType t, const std::vector<int>& ctx, int& maxBlocks) {
  maxBlocks = 0;
  int total = 0;
  for (int c : ctx) maxBlocks = std::max(maxBlocks, (c + p.blockSize - 1) / p.blockSize), total += (c + p.blockSize - 1) / p.blockSize;
  p.numBlocks = total + 3;
  const size_t plane = size_t(p.numBlocks) * p.kvHeads * p.blockSize * p.D;
  p.k.assign(plane, 0.0f), p.v.assign(plane, 0.0f);
  p.dk.reset(new Dev(plane * dtype_size(t))), p.dv.reset(new Dev(plane * dtype_size(t)));
  std::vector<int32_t> ids(static_cast<size_t>(p.numBlocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), g_rng);
  std::vector<int32_t> tables(ctx.size() * size_t(maxBlocks), 0);
  int next = 0;
  const int W = p.kvHeads * p.D;
  std::vector<float> kin, vin;
  std::vector<int64_t> slots;
  for (size_t s = 0; s < ctx.size(); s++) {
    for (int b = 0; b < (ctx[s] + p.blockSize - 1) / p.blockSize; b++) tables[s * maxBlocks + b] = ids[size_t(next++)];
    for (int pos = 0; pos < ctx[s]; pos++) {
      slots.push_back(int64_t(tables[s * maxBlocks + pos / p.blockSize]) * p.blockSize + pos % p.blockSize);
    }
  }
  const int n = int(slots.size());
  kin = randomVec(size_t(n) * W, -1, 1), vin = randomVec(size_t(n) * W, -1, 1);
  roundAll(t, kin), roundAll(t, vin);
  slots.push_back(-1);  // one padding token, skipped
  kin.resize(kin.size() + W, 5.0f), vin.resize(vin.size() + W, 5.0f);
  std::unique_ptr<Dev> dK(upload(t, kin)), dV(upload(t, vin)), dS(uploadRaw(slots));
  if (!launched("reshape_and_cache", launch_reshape_and_cache(dK->p, W, dV->p, W, p.dk->p, p.dv->p, dS->as<int64_t>(), n + 1,
                                                              p.kvHeads, p.D, p.blockSize, t, nullptr)))
    return tables;
  for (int i = 0; i < n; i++) {
    const int64_t blk = slots[size_t(i)] / p.blockSize, off = slots[size_t(i)] % p.blockSize;
    for (int h = 0; h < p.kvHeads; h++)
      for (int d = 0; d < p.D; d++) {
        const size_t dst = ((size_t(blk) * p.kvHeads + h) * p.blockSize + size_t(off)) * p.D + d;
        p.k[dst] = kin[size_t(i) * W + h * p.D + d];
        p.v[dst] = vin[size_t(i) * W + h * p.D + d];
      }
  }
  report(std::string("reshape_and_cache ") + dtype_name(t) + " K", download(t, p.dk.get(), plane), p.k, 0, 0);
  report(std::string("reshape_and_cache ") + dtype_name(t) + " V", download(t, p.dv.get(), plane), p.v, 0, 0);
  return tables;
}

/** Naive attention of one query vector over positions [0, n) of sequence s. */
void refAttend(const Pool& p, const int32_t* table, const float* q, int n, int kvh, float scale, float* out) {
  std::vector<double> sc(size_t(std::max(n, 1)));
  double mx = -INFINITY;
  auto at = [&](const std::vector<float>& c, int pos, int d) {
    return c[((size_t(table[pos / p.blockSize]) * p.kvHeads + kvh) * p.blockSize + pos % p.blockSize) * p.D + d];
  };
  for (int j = 0; j < n; j++) {
    double dot = 0;
    for (int d = 0; d < p.D; d++) dot += double(q[d]) * at(p.k, j, d);
    sc[size_t(j)] = dot * scale;
    mx = std::max(mx, sc[size_t(j)]);
  }
  double sum = 0;
  for (int j = 0; j < n; j++) sum += sc[size_t(j)] = std::exp(sc[size_t(j)] - mx);
  for (int d = 0; d < p.D; d++) {
    double acc = 0;
    for (int j = 0; j < n; j++) acc += sc[size_t(j)] * at(p.v, j, d);
    out[d] = float(acc / sum);
  }
}

void checkDecode(const Shape& s, DType t, int blockSize, std::vector<int> ctx) {
  Pool p{0, blockSize, s.kvHeads, s.headDim, {}, {}, nullptr, nullptr};
  int maxBlocks = 0;
  auto tables = fillPool(p, t, ctx, maxBlocks);
  const int S = int(ctx.size()), H = s.heads, D = s.headDim, ld = H * D;
  auto q = randomVec(size_t(S) * ld);
  roundAll(t, q);
  const int maxCtx = *std::max_element(ctx.begin(), ctx.end());
  const float scale = 1.0f / std::sqrt(float(D));
  std::unique_ptr<Dev> dQ(upload(t, q)), dO(new Dev(q.size() * 4)), dT(uploadRaw(tables)), dC(uploadRaw(ctx));
  const size_t ws = paged_attention_decode_workspace_bytes(S, H, D, maxCtx);
  std::unique_ptr<Dev> dW(new Dev(ws + 16));
  if (!launched("paged_attention_decode",
                launch_paged_attention_decode(dO->p, ld, dQ->p, ld, p.dk->p, p.dv->p, dT->as<int32_t>(), maxBlocks,
                                              dC->as<int32_t>(), maxCtx, S, H, s.kvHeads, D, blockSize, scale,
                                              dW->as<float>(), ws, t, nullptr)))
    return;
  std::vector<float> ref(q.size());
  for (int si = 0; si < S; si++)
    for (int h = 0; h < H; h++)
      refAttend(p, tables.data() + size_t(si) * maxBlocks, q.data() + size_t(si) * ld + h * D, ctx[size_t(si)],
                h / (H / s.kvHeads), scale, ref.data() + size_t(si) * ld + h * D);
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(std::string("paged_attention_decode ") + dtype_name(t) + " " + s.name + " bs" + std::to_string(blockSize) +
             " ctx<=" + std::to_string(maxCtx),
         download(t, dO.get(), ref.size()), ref, tol, tol);
}

void checkPrefill(const Shape& s, DType t, int blockSize, std::vector<int> qlen, std::vector<int> ctx) {
  Pool p{0, blockSize, s.kvHeads, s.headDim, {}, {}, nullptr, nullptr};
  int maxBlocks = 0;
  auto tables = fillPool(p, t, ctx, maxBlocks);
  const int S = int(ctx.size()), H = s.heads, D = s.headDim, ld = H * D;
  std::vector<int32_t> cu(size_t(S) + 1, 0);
  for (int i = 0; i < S; i++) cu[size_t(i) + 1] = cu[size_t(i)] + qlen[size_t(i)];
  const int N = cu[size_t(S)], maxQ = *std::max_element(qlen.begin(), qlen.end());
  auto q = randomVec(size_t(N) * ld);
  roundAll(t, q);
  const float scale = 1.0f / std::sqrt(float(D));
  std::unique_ptr<Dev> dQ(upload(t, q)), dO(new Dev(q.size() * 4)), dT(uploadRaw(tables)), dC(uploadRaw(ctx)),
      dCu(uploadRaw(cu));
  if (!launched("prefill_attention",
                launch_prefill_attention(dO->p, ld, dQ->p, ld, p.dk->p, p.dv->p, dT->as<int32_t>(), maxBlocks,
                                         dCu->as<int32_t>(), dC->as<int32_t>(), S, maxQ, H, s.kvHeads, D, blockSize, scale,
                                         t, nullptr)))
    return;
  std::vector<float> ref(q.size());
  for (int si = 0; si < S; si++)
    for (int i = 0; i < qlen[size_t(si)]; i++) {
      const int row = cu[size_t(si)] + i, pos = ctx[size_t(si)] - qlen[size_t(si)] + i;
      for (int h = 0; h < H; h++)
        refAttend(p, tables.data() + size_t(si) * maxBlocks, q.data() + size_t(row) * ld + h * D, pos + 1,
                  h / (H / s.kvHeads), scale, ref.data() + size_t(row) * ld + h * D);
    }
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(std::string("prefill_attention ") + dtype_name(t) + " " + s.name + " bs" + std::to_string(blockSize) + " N=" +
             std::to_string(N),
         download(t, dO.get(), ref.size()), ref, tol, tol);
}

// ---------------------------------------------------------------------------------------------
// LoRA

void checkLora(const Shape& s, DType t, int in, int out) {
  const int rows = 24, slots = 5, R = s.rank;
  std::vector<int32_t> rank = {R, R / 2, R, 4, R};
  auto a = randomVec(size_t(slots) * R * in, -0.1f, 0.1f), bt = randomVec(size_t(slots) * R * out, -0.1f, 0.1f);
  for (int sl = 0; sl < slots; sl++)  // garbage (not zero) past each slot's rank: slot_rank must ignore it
    for (int r = rank[size_t(sl)]; r < R; r++) a[(size_t(sl) * R + r) * in] = 77.0f, bt[(size_t(sl) * R + r) * out] = 77.0f;
  auto x = randomVec(size_t(rows) * in), y0 = randomVec(size_t(rows) * out);
  roundAll(t, a), roundAll(t, bt), roundAll(t, x), roundAll(t, y0);
  // Terms: rows 0-9 a prefill segment on slot 1; rows 4-9 also slot 3 (a `cat` merge); rows
  // 12-23 decode tokens on mixed slots, row 15 and 20 without adapters, rows 10-11 none.
  std::vector<int32_t> termRow, termSlot;
  std::vector<float> termScale;
  for (int r = 0; r < 10; r++) termRow.push_back(r), termSlot.push_back(1), termScale.push_back(0.6f * 2.0f);
  for (int r = 4; r < 10; r++) termRow.push_back(r), termSlot.push_back(3), termScale.push_back(0.4f * 0.5f);
  for (int r = 12; r < rows; r++)
    if (r != 15 && r != 20) termRow.push_back(r), termSlot.push_back(int(g_rng() % slots)), termScale.push_back(1.0f + 0.1f * float(r));
  const int T = int(termRow.size());
  // SGMV segments: group terms by slot (stable), as cpu::LoraBatch does.
  std::vector<int> order(static_cast<size_t>(T));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return termSlot[size_t(i)] < termSlot[size_t(j)]; });
  std::vector<int32_t> sRow, sSlot, segStart, segSlot;
  std::vector<float> sScale;
  int maxSeg = 0;
  for (int i = 0; i < T; i++) {
    const int o = order[size_t(i)];
    if (i == 0 || termSlot[size_t(o)] != sSlot.back()) segStart.push_back(i), segSlot.push_back(termSlot[size_t(o)]);
    sRow.push_back(termRow[size_t(o)]), sSlot.push_back(termSlot[size_t(o)]), sScale.push_back(termScale[size_t(o)]);
  }
  segStart.push_back(T);
  for (size_t g = 0; g + 1 < segStart.size(); g++) maxSeg = std::max(maxSeg, segStart[g + 1] - segStart[g]);
  std::vector<int32_t> rowPtr(size_t(rows) + 1, 0), rowTerms;
  for (int r = 0; r < rows; r++) {
    for (int i = 0; i < T; i++)
      if (sRow[size_t(i)] == r) rowTerms.push_back(i);
    rowPtr[size_t(r) + 1] = int(rowTerms.size());
  }
  // Reference.
  std::vector<float> tmpRef(size_t(T) * R, 0.0f), yRef = y0;
  std::vector<double> yAcc(y0.size(), 0.0);
  for (int i = 0; i < T; i++) {
    const int sl = sSlot[size_t(i)], rk = rank[size_t(sl)];
    for (int r = 0; r < rk; r++) {
      double d = 0;
      for (int k = 0; k < in; k++) d += double(x[size_t(sRow[size_t(i)]) * in + k]) * a[(size_t(sl) * R + r) * in + k];
      tmpRef[size_t(i) * R + r] = float(d);
    }
    for (int o = 0; o < out; o++) {
      double acc = 0;
      for (int r = 0; r < rk; r++) acc += double(tmpRef[size_t(i) * R + r]) * bt[(size_t(sl) * R + r) * out + o];
      yAcc[size_t(sRow[size_t(i)]) * out + o] += sScale[size_t(i)] * acc;
    }
  }
  for (size_t i = 0; i < yRef.size(); i++) yRef[i] = float(y0[i] + yAcc[i]);
  std::unique_ptr<Dev> dX(upload(t, x)), dA(upload(t, a)), dB(upload(t, bt)), dY(upload(t, y0)), dTmp(new Dev(size_t(T) * R * 4)),
      dRank(uploadRaw(rank)), dRow(uploadRaw(sRow)), dSl(uploadRaw(sSlot)), dSc(uploadRaw(sScale)), dSeg(uploadRaw(segStart)),
      dSegSl(uploadRaw(segSlot)), dRp(uploadRaw(rowPtr)), dRt(uploadRaw(rowTerms));
  const std::string tag = std::string(dtype_name(t)) + " " + s.name + " " + std::to_string(in) + "->" + std::to_string(out);
  const float tolT = t == DType::F32 ? 1e-4f : 2e-2f;
  if (launched("sgmv_shrink", launch_sgmv_shrink(dTmp->as<float>(), dX->p, in, dA->p, dRank->as<int32_t>(), dRow->as<int32_t>(),
                                                 dSeg->as<int32_t>(), dSegSl->as<int32_t>(), int(segSlot.size()), maxSeg, T,
                                                 in, R, t, nullptr)))
    report("sgmv_shrink " + tag, download(DType::F32, dTmp.get(), tmpRef.size()), tmpRef, 1e-3f, tolT);
  if (launched("sgmv_expand", launch_sgmv_expand(dY->p, out, dTmp->as<float>(), dB->p, dRank->as<int32_t>(), dRp->as<int32_t>(),
                                                 dRt->as<int32_t>(), dSl->as<int32_t>(), dSc->as<float>(), rows, out, R, t,
                                                 nullptr)))
    report("sgmv_expand " + tag, download(t, dY.get(), yRef.size()), yRef, 1e-2f, tolT);
  // BGMV: the decode terms only (one per row), shrink + expand.
  std::vector<int32_t> bRow, bSlot;
  std::vector<float> bScale;
  for (int i = 0; i < T; i++)
    if (sRow[size_t(i)] >= 12) bRow.push_back(sRow[size_t(i)]), bSlot.push_back(sSlot[size_t(i)]), bScale.push_back(sScale[size_t(i)]);
  bSlot[0] = -1;  // a term without a slot: contributes nothing
  const int BT = int(bRow.size());
  std::vector<float> bTmpRef(size_t(BT) * R, 0.0f), bY = y0;
  for (int i = 0; i < BT; i++) {
    const int sl = bSlot[size_t(i)];
    if (sl < 0) continue;
    for (int r = 0; r < rank[size_t(sl)]; r++) {
      double d = 0;
      for (int k = 0; k < in; k++) d += double(x[size_t(bRow[size_t(i)]) * in + k]) * a[(size_t(sl) * R + r) * in + k];
      bTmpRef[size_t(i) * R + r] = float(d);
    }
    for (int o = 0; o < out; o++) {
      double acc = 0;
      for (int r = 0; r < rank[size_t(sl)]; r++) acc += double(bTmpRef[size_t(i) * R + r]) * bt[(size_t(sl) * R + r) * out + o];
      bY[size_t(bRow[size_t(i)]) * out + o] = float(y0[size_t(bRow[size_t(i)]) * out + o] + bScale[size_t(i)] * acc);
    }
  }
  std::unique_ptr<Dev> dY2(upload(t, y0)), dBr(uploadRaw(bRow)), dBs(uploadRaw(bSlot)), dBc(uploadRaw(bScale)),
      dBt(new Dev(size_t(BT) * R * 4));
  if (launched("bgmv_shrink", launch_bgmv_shrink(dBt->as<float>(), dX->p, in, dA->p, dRank->as<int32_t>(), dBr->as<int32_t>(),
                                                 dBs->as<int32_t>(), BT, in, R, t, nullptr)))
    report("bgmv_shrink " + tag, download(DType::F32, dBt.get(), bTmpRef.size()), bTmpRef, 1e-3f, tolT);
  if (launched("bgmv_expand", launch_bgmv_expand(dY2->p, out, dBt->as<float>(), dB->p, dRank->as<int32_t>(), dBr->as<int32_t>(),
                                                 dBs->as<int32_t>(), dBc->as<float>(), BT, out, R, t, nullptr)))
    report("bgmv_expand " + tag, download(t, dY2.get(), bY.size()), bY, 1e-2f, tolT);
}

// ---------------------------------------------------------------------------------------------
// GEMM and quantized GEMM

std::vector<float> refGemm(const std::vector<float>& x, const std::vector<float>& w, int m, int n, int k) {
  std::vector<float> y(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int kk = 0; kk < k; kk++) acc += double(x[size_t(i) * k + kk]) * w[size_t(j) * k + kk];
      y[size_t(i) * n + j] = float(acc);
    }
  return y;
}

void checkGemm(DType in, DType outT, int m, int n, int k, bool cublas) {
  auto x = randomVec(size_t(m) * k), w = randomVec(size_t(n) * k, -0.05f, 0.05f), y0 = randomVec(size_t(m) * n);
  roundAll(in, x), roundAll(in, w), roundAll(outT, y0);
  const float alpha = 1.5f, beta = 0.5f;
  auto ref = refGemm(x, w, m, n, k);
  for (size_t i = 0; i < ref.size(); i++) ref[i] = alpha * ref[i] + beta * y0[i];
  std::unique_ptr<Dev> dX(upload(in, x)), dW(upload(in, w)), dY(upload(outT, y0));
  const char* name = cublas ? "cublas_gemm" : "gemm";
  cudaError_t err = cublas ? launch_cublas_gemm(dY->p, n, outT, dX->p, k, dW->p, k, m, n, k, alpha, beta, in, nullptr)
                           : launch_gemm(dY->p, n, outT, dX->p, k, dW->p, k, m, n, k, alpha, beta, in, nullptr);
  if (!launched(name, err)) return;
  const float tol = outT == DType::F32 ? 2e-3f : 1.6e-2f;
  report(std::string(name) + " " + dtype_name(in) + "->" + dtype_name(outT) + " " + std::to_string(m) + "x" +
             std::to_string(n) + "x" + std::to_string(k),
         download(outT, dY.get(), ref.size()), ref, tol, tol);
}

void checkW8(DType t, int m, int n, int k) {
  auto x = randomVec(size_t(m) * k), y0 = randomVec(size_t(m) * n);
  roundAll(t, x), roundAll(t, y0);
  std::vector<int8_t> wq(size_t(n) * k);
  for (auto& v : wq) {
    do v = int8_t(int(g_rng() % 255) - 127);
    while (v == 0);
  }
  auto sc = randomVec(size_t(n), 0.001f, 0.01f);
  std::vector<float> ref(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int kk = 0; kk < k; kk++) acc += double(x[size_t(i) * k + kk]) * wq[size_t(j) * k + kk];
      ref[size_t(i) * n + j] = float(y0[size_t(i) * n + j] + 0.5 * sc[size_t(j)] * acc);
    }
  std::unique_ptr<Dev> dX(upload(t, x)), dY(upload(t, y0)), dW(uploadRaw(wq)), dS(uploadRaw(sc));
  if (!launched("gemm_w8", launch_gemm_w8(dY->p, n, dX->p, k, dW->as<int8_t>(), dS->as<float>(), m, n, k, 0.5f, true, t, nullptr)))
    return;
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(std::string("gemm_w8 ") + dtype_name(t) + " " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k),
         download(t, dY.get(), ref.size()), ref, tol, tol);
}

void checkFp8(DType t, int m, int n, int k, bool perTensor, int cc) {
  auto x = randomVec(size_t(m) * k);
  roundAll(t, x);
  std::vector<uint8_t> wq(size_t(n) * k);
  std::vector<float> wf(wq.size());
  for (size_t i = 0; i < wq.size(); i++) {
    __nv_fp8_e4m3 v(randomVec(1, -4, 4)[0]);
    wq[i] = v.__x;
    wf[i] = float(v);
  }
  const int ns = perTensor ? 1 : n;
  auto sc = randomVec(size_t(ns), 0.01f, 0.1f);
  std::vector<float> ref(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int kk = 0; kk < k; kk++) acc += double(x[size_t(i) * k + kk]) * wf[size_t(j) * k + kk];
      ref[size_t(i) * n + j] = float(sc[perTensor ? 0 : size_t(j)] * acc);
    }
  std::unique_ptr<Dev> dX(upload(t, x)), dY(new Dev(ref.size() * 4)), dW(uploadRaw(wq)), dS(uploadRaw(sc));
  const std::string name = std::string("gemm_fp8 ") + (perTensor ? "per-tensor " : "per-channel ") + dtype_name(t) + " " +
                           std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
  const cudaError_t err = launch_gemm_fp8(dY->p, n, dX->p, k, dW->as<uint8_t>(), dS->as<float>(), ns, m, n, k, 1.0f, false, t, nullptr);
  if (cc < 89) {
    reportBool(name + " (sm_" + std::to_string(cc) + ")", err == cudaErrorNotSupported &&
                   std::strstr(last_error_message(), "No suitable kernel") != nullptr,
               std::string("refused: ") + last_error_message());
    return;
  }
  if (!launched(name.c_str(), err)) return;
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(name, download(t, dY.get(), ref.size()), ref, tol, tol);
}

// ---------------------------------------------------------------------------------------------
// Sampling

void checkSampling(int vocab) {
  // Batch: 0 greedy, 1 top_k = 1 (must equal greedy of processed logits), 2 top_k 50 + top_p 0.9,
  // 3 top_p 0.5 with penalties and bias, 4 plain temperature 0.7; plus a ties row (5, greedy).
  const int S = 6, N = 5;
  auto logits = randomVec(size_t(S) * vocab, -8, 8);
  for (int i = 0; i < vocab; i++) logits[size_t(5) * vocab + i] = float(i % 7);  // ties at 6
  std::vector<float> temp = {0, 1.0f, 0.8f, 1.2f, 0.7f, 0};
  std::vector<int32_t> topk = {0, 1, 50, 0, 0, 0};
  std::vector<float> topp = {1, 1, 0.9f, 0.5f, 1, 1};
  std::vector<float> pres = {0, 0, 0, 0.5f, 0, 0}, freq = {0, 0, 0, 0.3f, 0, 0};
  std::vector<int32_t> penPtr = {0, 0, 0, 0, 2, 2, 2}, penTok = {7, 9}, penCnt = {3, 1};
  std::vector<int32_t> biasPtr = {0, 0, 1, 1, 2, 2, 2}, biasTok = {11, 13};  // seq 1: 11 +100; seq 3: 13 +5
  std::vector<float> biasVal = {100.0f, 5.0f};
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5, 6}, steps = {0, 0, 9, 9, 9, 0};
  std::unique_ptr<Dev> dL(uploadRaw(logits)), dT(uploadRaw(temp)), dK(uploadRaw(topk)), dP(uploadRaw(topp)),
      dPr(uploadRaw(pres)), dFr(uploadRaw(freq)), dPp(uploadRaw(penPtr)), dPt(uploadRaw(penTok)), dPc(uploadRaw(penCnt)),
      dBp(uploadRaw(biasPtr)), dBt(uploadRaw(biasTok)), dBv(uploadRaw(biasVal)), dSe(uploadRaw(seeds)), dSt(uploadRaw(steps)),
      dOut(new Dev(S * 4)), dLp(new Dev(S * 4)), dTt(new Dev(S * N * 4)), dTl(new Dev(S * N * 4)),
      dWs(new Dev(sampling_workspace_bytes(S, vocab)));
  SamplingBatch b;
  b.num_seqs = S, b.vocab = vocab, b.logits = dL->as<float>(), b.ld_logits = vocab, b.temperature = dT->as<float>();
  b.top_k = dK->as<int32_t>(), b.top_p = dP->as<float>(), b.presence_penalty = dPr->as<float>();
  b.frequency_penalty = dFr->as<float>(), b.penalty_ptr = dPp->as<int32_t>(), b.penalty_tokens = dPt->as<int32_t>();
  b.penalty_counts = dPc->as<int32_t>(), b.bias_ptr = dBp->as<int32_t>(), b.bias_tokens = dBt->as<int32_t>();
  b.bias_values = dBv->as<float>(), b.seeds = dSe->as<uint64_t>(), b.steps = dSt->as<uint64_t>();
  b.max_top_logprobs = N, b.out_tokens = dOut->as<int32_t>(), b.out_logprobs = dLp->as<float>();
  b.out_top_tokens = dTt->as<int32_t>(), b.out_top_logprobs = dTl->as<float>(), b.workspace = dWs->as<float>();
  if (!launched("sample", launch_sample(b, nullptr))) return;
  auto tok = downloadRaw<int32_t>(dOut.get(), S);
  auto lp = downloadRaw<float>(dLp.get(), S);
  auto tt = downloadRaw<int32_t>(dTt.get(), S * N);
  auto tl = downloadRaw<float>(dTl.get(), S * N);
  if (!launched("sample (again)", launch_sample(b, nullptr))) return;
  auto tok2 = downloadRaw<int32_t>(dOut.get(), S);
  bool ok = true;
  std::string why;
  std::vector<float> lpRef, tlRef, tlGot;
  for (int s = 0; s < S; s++) {
    const float* raw = logits.data() + size_t(s) * vocab;
    std::vector<float> w(raw, raw + vocab);
    for (int e = biasPtr[size_t(s)]; e < biasPtr[size_t(s) + 1]; e++) w[size_t(biasTok[size_t(e)])] += biasVal[size_t(e)];
    for (int e = penPtr[size_t(s)]; e < penPtr[size_t(s) + 1]; e++)
      w[size_t(penTok[size_t(e)])] -= freq[size_t(s)] * float(penCnt[size_t(e)]) + pres[size_t(s)];
    double mx = *std::max_element(raw, raw + vocab), sum = 0;
    for (int i = 0; i < vocab; i++) sum += std::exp(double(raw[i]) - mx);
    const double lse = mx + std::log(sum);
    // Allowed set: (prob desc, id asc) order, top_k prefix, then top_p prefix.
    std::vector<int> ord(static_cast<size_t>(vocab));
    std::iota(ord.begin(), ord.end(), 0);
    std::stable_sort(ord.begin(), ord.end(), [&](int i, int j) { return w[size_t(i)] > w[size_t(j)]; });
    size_t keep = temp[size_t(s)] <= 0 ? 1 : size_t(vocab);
    if (topk[size_t(s)] > 0) keep = std::min(keep, size_t(topk[size_t(s)]));
    if (temp[size_t(s)] > 0 && topp[size_t(s)] < 1) {
      const double wm = w[size_t(ord[0])];
      double kept = 0, cum = 0;
      for (size_t i = 0; i < keep; i++) kept += std::exp((w[size_t(ord[i])] - wm) / temp[size_t(s)]);
      size_t n = 0;
      while (n < keep) {
        cum += std::exp((w[size_t(ord[n])] - wm) / temp[size_t(s)]);
        n++;
        if (cum / kept >= topp[size_t(s)]) break;
      }
      keep = std::max<size_t>(1, n) + 1;  // +1: the boundary element may go either way in fp32 sums
    }
    const bool inSet = std::find(ord.begin(), ord.begin() + long(keep), tok[size_t(s)]) != ord.begin() + long(keep);
    if (!inSet) ok = false, why += " seq" + std::to_string(s) + ": token " + std::to_string(tok[size_t(s)]) + " outside the allowed set;";
    if (tok[size_t(s)] != tok2[size_t(s)]) ok = false, why += " seq" + std::to_string(s) + " not deterministic;";
    lpRef.push_back(float(raw[tok[size_t(s)]] - lse));
    std::vector<int> rord(static_cast<size_t>(vocab));
    std::iota(rord.begin(), rord.end(), 0);
    std::stable_sort(rord.begin(), rord.end(), [&](int i, int j) { return raw[i] > raw[j]; });
    for (int n = 0; n < N; n++) {
      if (tt[size_t(s) * N + n] != rord[size_t(n)])
        ok = false, why += " seq" + std::to_string(s) + " top" + std::to_string(n) + " id " + std::to_string(tt[size_t(s) * N + n]) +
                           " != " + std::to_string(rord[size_t(n)]) + ";";
      tlRef.push_back(float(raw[rord[size_t(n)]] - lse));
      tlGot.push_back(tl[size_t(s) * N + n]);
    }
  }
  if (tok[0] != int(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin())) ok = false, why += " greedy != argmax;";
  if (tok[1] != 11) ok = false, why += " top_k=1 with bias +100 on 11 did not pick 11;";
  if (tok[5] != 6) ok = false, why += " greedy tie did not pick the lowest id (6);";
  reportBool("sample selection vocab " + std::to_string(vocab), ok, ok ? "greedy, ties, bias, top-k/top-p sets, determinism" : why);
  report("sample logprobs vocab " + std::to_string(vocab), lp, lpRef, 1e-4f, 1e-4f);
  report("sample top logprobs vocab " + std::to_string(vocab), tlGot, tlRef, 1e-4f, 1e-4f);
}

/**
 * Token masks (constrained decoding): 64 rows over one logits row, each with its own random
 * allowed set (~1/16 of the vocabulary, token 3 * row always allowed), greedy / temperature /
 * top_k 3 / top_p 0.5 by row, plus unmasked rows (mask_index -1). Every token must be allowed,
 * greedy must be the argmax of the raw logits over the allowed set, logprobs must stay unmasked.
 */
void checkSamplingMasked(int vocab) {
  const int S = 64, words = (vocab + 31) / 32;
  auto row = randomVec(size_t(vocab), -8, 8);
  std::vector<float> logits, temp, topp;
  std::vector<int32_t> topk, index;
  std::vector<uint32_t> masks;
  std::vector<uint64_t> seeds, steps;
  for (int s = 0; s < S; s++) {
    logits.insert(logits.end(), row.begin(), row.end());
    temp.push_back(s % 4 == 0 ? 0.0f : 1.0f);
    topk.push_back(s % 4 == 2 ? 3 : 0);
    topp.push_back(s % 4 == 3 ? 0.5f : 1.0f);
    seeds.push_back(uint64_t(s)), steps.push_back(uint64_t(s));
    index.push_back(s % 8 == 7 ? -1 : int32_t(masks.size() / size_t(words)));
    if (index.back() < 0) continue;
    std::vector<uint32_t> m(size_t(words), 0u);
    for (int i = 0; i < vocab; i++)
      if (g_rng() % 16 == 0 || i == (3 * s) % vocab) m[size_t(i >> 5)] |= 1u << (i & 31);
    masks.insert(masks.end(), m.begin(), m.end());
  }
  std::unique_ptr<Dev> dL(uploadRaw(logits)), dT(uploadRaw(temp)), dK(uploadRaw(topk)), dP(uploadRaw(topp)), dM(uploadRaw(masks)),
      dI(uploadRaw(index)), dSe(uploadRaw(seeds)), dSt(uploadRaw(steps)), dOut(new Dev(S * 4)), dLp(new Dev(S * 4)),
      dWs(new Dev(sampling_workspace_bytes(S, vocab)));
  SamplingBatch b;
  b.num_seqs = S, b.vocab = vocab, b.logits = dL->as<float>(), b.ld_logits = vocab, b.temperature = dT->as<float>();
  b.top_k = dK->as<int32_t>(), b.top_p = dP->as<float>(), b.seeds = dSe->as<uint64_t>(), b.steps = dSt->as<uint64_t>();
  b.token_masks = dM->as<uint32_t>(), b.mask_index = dI->as<int32_t>(), b.mask_words = words;
  b.out_tokens = dOut->as<int32_t>(), b.out_logprobs = dLp->as<float>(), b.workspace = dWs->as<float>();
  if (!launched("sample masked", launch_sample(b, nullptr))) return;
  auto tok = downloadRaw<int32_t>(dOut.get(), S);
  auto lp = downloadRaw<float>(dLp.get(), S);
  double mx = *std::max_element(row.begin(), row.end()), sum = 0;
  for (float v : row) sum += std::exp(double(v) - mx);
  const double lse = mx + std::log(sum);
  bool ok = true;
  std::string why;
  std::vector<float> lpRef;
  for (int s = 0; s < S; s++) {
    const int t = tok[size_t(s)];
    lpRef.push_back(t >= 0 && t < vocab ? float(row[size_t(t)] - lse) : 0.0f);
    if (index[size_t(s)] < 0) continue;
    const uint32_t* m = masks.data() + size_t(index[size_t(s)]) * words;
    auto allowed = [&](int i) { return ((m[i >> 5] >> (i & 31)) & 1u) != 0; };
    if (t < 0 || t >= vocab || !allowed(t)) ok = false, why += " seq" + std::to_string(s) + ": token " + std::to_string(t) + " not allowed;";
    if (temp[size_t(s)] > 0) continue;
    int best = -1;
    for (int i = 0; i < vocab; i++)
      if (allowed(i) && (best < 0 || row[size_t(i)] > row[size_t(best)])) best = i;
    if (t != best) ok = false, why += " seq" + std::to_string(s) + ": greedy " + std::to_string(t) + " != masked argmax " + std::to_string(best) + ";";
  }
  reportBool("sample masked vocab " + std::to_string(vocab), ok, ok ? "every token allowed, greedy = argmax over the allowed set" : why);
  report("sample masked logprobs (unmasked) vocab " + std::to_string(vocab), lp, lpRef, 1e-4f, 1e-4f);
}

/** Frequencies of 20000 draws (one sequence each, steps 0..) from an 8-token distribution. */
void checkSamplingDistribution() {
  const int V = 8, S = 20000;
  const std::vector<float> row = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, -3.0f, 1.5f, 0.25f};
  std::vector<float> logits;
  for (int s = 0; s < S; s++) logits.insert(logits.end(), row.begin(), row.end());
  std::vector<float> temp(size_t(S), 1.0f);
  std::vector<uint64_t> seeds(size_t(S), 42), steps(static_cast<size_t>(S));
  std::iota(steps.begin(), steps.end(), uint64_t(0));
  std::unique_ptr<Dev> dL(uploadRaw(logits)), dT(uploadRaw(temp)), dSe(uploadRaw(seeds)), dSt(uploadRaw(steps)),
      dOut(new Dev(size_t(S) * 4)), dWs(new Dev(sampling_workspace_bytes(S, V)));
  SamplingBatch b;
  b.num_seqs = S, b.vocab = V, b.logits = dL->as<float>(), b.ld_logits = V, b.temperature = dT->as<float>();
  b.seeds = dSe->as<uint64_t>(), b.steps = dSt->as<uint64_t>(), b.out_tokens = dOut->as<int32_t>(), b.workspace = dWs->as<float>();
  if (!launched("sample distribution", launch_sample(b, nullptr))) return;
  auto tok = downloadRaw<int32_t>(dOut.get(), size_t(S));
  std::vector<float> freq(size_t(V), 0.0f), p(static_cast<size_t>(V));
  double z = 0;
  for (int i = 0; i < V; i++) z += std::exp(double(row[size_t(i)]));
  for (int i = 0; i < V; i++) p[size_t(i)] = float(std::exp(double(row[size_t(i)])) / z);
  for (int t : tok)
    if (t >= 0 && t < V) freq[size_t(t)] += 1.0f / S;
  report("sample frequencies (20000 draws, 8 tokens)", freq, p, 0.012f, 0.0f);  // ~4 sigma at p = 0.4
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("no CUDA device (%s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
    return 2;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const int cc = prop.major * 10 + prop.minor;
  std::printf("device 0: %s (sm_%d)\n", prop.name, cc);

  const Shape demo{"demo", 256, 8, 4, 32, 704, 16, 2048};
  const Shape llama{"llama3-8b", 4096, 32, 8, 128, 14336, 16, 128256};
  std::vector<Shape> shapes = {demo};
  if (!quick) shapes.push_back(llama);

  for (const Shape& s : shapes) {
    std::printf("--- %s: hidden %d, heads %d/%d, head_dim %d, inter %d, rank %d\n", s.name, s.hidden, s.heads, s.kvHeads,
                s.headDim, s.inter, s.rank);
    for (DType t : {DType::BF16, DType::F16, DType::F32}) {
      checkEmbedding(s, t);
      checkRmsNorm(s, t);
      checkRope(s, t, false);
      checkSwiglu(s, t);
    }
    checkRope(s, DType::BF16, true);
    for (DType t : {DType::BF16, DType::F32}) {
      checkDecode(s, t, 16, {1, 17, 300, 512, 513, 1500});
      checkPrefill(s, t, 16, {5, 40, 1}, {5, 100, 64});
    }
    checkDecode(s, DType::F16, 32, {2000, 33, 4097});
    checkPrefill(s, DType::F16, 32, {70, 3}, {70, 200});
    for (DType t : {DType::BF16, DType::F16, DType::F32}) {
      checkLora(s, t, s.hidden, s.heads * s.headDim);  // q_proj
      checkLora(s, t, s.hidden, s.kvHeads * s.headDim);  // k/v_proj
    }
    checkLora(s, DType::BF16, s.inter, s.hidden);  // down_proj
    checkLora(s, DType::BF16, s.hidden, s.inter);  // gate/up_proj
    for (DType in : {DType::BF16, DType::F16})
      for (DType out : {in, DType::F32}) {
        checkGemm(in, out, 1, s.hidden, s.hidden, false);
        checkGemm(in, out, 37, s.inter, s.hidden, false);
        checkGemm(in, out, 70, s.hidden, s.inter, false);
      }
    for (DType t : {DType::BF16, DType::F16, DType::F32}) {
      checkW8(t, 1, s.hidden, s.hidden);
      checkW8(t, 13, s.inter, s.hidden);
      checkFp8(t, 3, s.hidden, s.hidden, false, cc);
      checkFp8(t, 9, s.inter, s.hidden, true, cc);
    }
    checkSampling(s.vocab);
    checkSamplingMasked(s.vocab);
  }
  const char* why = nullptr;
  if (cublas_available(&why)) {
    checkGemm(DType::BF16, DType::BF16, 37, 704, 256, true);
    checkGemm(DType::F16, DType::F32, 70, 4096, 4096, true);
  } else {
    std::printf("SKIP  cublas_gemm: %s\n", why);
  }
  checkSamplingDistribution();
  std::printf("%s: %d failure(s)\n", g_failures ? "FAIL" : "PASS", g_failures);
  return g_failures ? 1 : 0;
}
