// CUDA kernel checks: reshape_and_cache, paged (decode) and prefill attention, also with a sliding
// window (blocks before it dropped to -1, so a read of one faults or shows) and Gemma 2's
// attention-logit soft-capping. Each kernel against a naive CPU loop on random inputs.
#include "check_util.cuh"
#include "../../../native/cuda/paged_attention.cuh"
#include "../../../native/cuda/prefill_attention.cuh"
#include "../../../native/cuda/reshape_and_cache.cuh"

namespace openlora::cuda_checks {

namespace {

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
  p.dk.reset(new Dev(plane * dtypeSize(t))), p.dv.reset(new Dev(plane * dtypeSize(t)));
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
  report(std::string("reshape_and_cache ") + dtypeName(t) + " K", download(t, p.dk.get(), plane), p.k, 0, 0);
  report(std::string("reshape_and_cache ") + dtypeName(t) + " V", download(t, p.dv.get(), plane), p.v, 0, 0);
  return tables;
}

/**
 * Naive attention of one query vector over positions [max(0, n - window), n) of sequence s
 * (window 0: all), scores soft-capped (cap * tanh(score / cap)) when cap > 0.
 */
void refAttend(const Pool& p, const int32_t* table, const float* q, int n, int kvh, float scale, float* out, int window = 0,
               float cap = 0.0f) {
  const int lo = window > 0 ? std::max(0, n - window) : 0;
  std::vector<double> sc(size_t(std::max(n, 1)));
  double mx = -INFINITY;
  auto at = [&](const std::vector<float>& c, int pos, int d) {
    return c[((size_t(table[pos / p.blockSize]) * p.kvHeads + kvh) * p.blockSize + pos % p.blockSize) * p.D + d];
  };
  for (int j = lo; j < n; j++) {
    double dot = 0;
    for (int d = 0; d < p.D; d++) dot += double(q[d]) * at(p.k, j, d);
    sc[size_t(j)] = dot * scale;
    if (cap > 0) sc[size_t(j)] = cap * std::tanh(sc[size_t(j)] / cap);
    mx = std::max(mx, sc[size_t(j)]);
  }
  double sum = 0;
  for (int j = lo; j < n; j++) sum += sc[size_t(j)] = std::exp(sc[size_t(j)] - mx);
  for (int d = 0; d < p.D; d++) {
    double acc = 0;
    for (int j = lo; j < n; j++) acc += sc[size_t(j)] * at(p.v, j, d);
    out[d] = float(acc / sum);
  }
}

/** A copy of `tables` with every block wholly before position first[s] set to -1 (dropped, kv_cache.h). */
std::vector<int32_t> dropBefore(std::vector<int32_t> tables, int maxBlocks, int blockSize, const std::vector<int>& first) {
  for (size_t s = 0; s < first.size(); s++)
    for (int b = 0; (b + 1) * blockSize <= first[s]; b++) tables[s * size_t(maxBlocks) + size_t(b)] = -1;
  return tables;
}

/** " window W cap C" for the report, "" without either. */
std::string variant(int window, float cap) {
  std::string v;
  if (window > 0) v += " window" + std::to_string(window);
  if (cap > 0) v += " cap" + std::to_string(int(cap));
  return v;
}

void checkDecode(const Shape& s, DType t, int blockSize, std::vector<int> ctx, int window = 0, float cap = 0.0f) {
  Pool p{0, blockSize, s.kvHeads, s.headDim, {}, {}, nullptr, nullptr};
  int maxBlocks = 0;
  auto tables = fillPool(p, t, ctx, maxBlocks);
  const int S = int(ctx.size()), H = s.heads, D = s.headDim, ld = H * D;
  auto q = randomVec(size_t(S) * ld);
  roundAll(t, q);
  const int maxCtx = *std::max_element(ctx.begin(), ctx.end());
  const float scale = 1.0f / std::sqrt(float(D));
  std::vector<int> first(ctx.size(), 0);
  for (size_t i = 0; i < ctx.size() && window > 0; i++) first[i] = std::max(0, ctx[i] - window);
  std::unique_ptr<Dev> dQ(upload(t, q)), dO(new Dev(q.size() * 4)), dT(uploadRaw(dropBefore(tables, maxBlocks, blockSize, first))),
      dC(uploadRaw(ctx));
  const size_t ws = paged_attention_decode_workspace_bytes(S, H, D, maxCtx);
  std::unique_ptr<Dev> dW(new Dev(ws + 16));
  if (!launched("paged_attention_decode",
                launch_paged_attention_decode(dO->p, ld, dQ->p, ld, p.dk->p, p.dv->p, dT->as<int32_t>(), maxBlocks,
                                              dC->as<int32_t>(), maxCtx, S, H, s.kvHeads, D, blockSize, scale, cap, window,
                                              dW->as<float>(), ws, t, nullptr)))
    return;
  std::vector<float> ref(q.size());
  for (int si = 0; si < S; si++)
    for (int h = 0; h < H; h++)
      refAttend(p, tables.data() + size_t(si) * maxBlocks, q.data() + size_t(si) * ld + h * D, ctx[size_t(si)],
                h / (H / s.kvHeads), scale, ref.data() + size_t(si) * ld + h * D, window, cap);
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(std::string("paged_attention_decode ") + dtypeName(t) + " " + s.name + " bs" + std::to_string(blockSize) +
             " ctx<=" + std::to_string(maxCtx) + variant(window, cap),
         download(t, dO.get(), ref.size()), ref, tol, tol);
}

void checkPrefill(const Shape& s, DType t, int blockSize, std::vector<int> qlen, std::vector<int> ctx, int window = 0,
                  float cap = 0.0f) {
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
  // Dropped: blocks wholly before the first query's window (what the engine frees).
  std::vector<int> first(size_t(S), 0);
  for (int i = 0; i < S && window > 0; i++) first[size_t(i)] = std::max(0, ctx[size_t(i)] - qlen[size_t(i)] - window + 1);
  std::unique_ptr<Dev> dQ(upload(t, q)), dO(new Dev(q.size() * 4)), dT(uploadRaw(dropBefore(tables, maxBlocks, blockSize, first))),
      dC(uploadRaw(ctx)), dCu(uploadRaw(cu));
  if (!launched("prefill_attention",
                launch_prefill_attention(dO->p, ld, dQ->p, ld, p.dk->p, p.dv->p, dT->as<int32_t>(), maxBlocks,
                                         dCu->as<int32_t>(), dC->as<int32_t>(), S, maxQ, H, s.kvHeads, D, blockSize, scale,
                                         cap, window, t, nullptr)))
    return;
  std::vector<float> ref(q.size());
  for (int si = 0; si < S; si++)
    for (int i = 0; i < qlen[size_t(si)]; i++) {
      const int row = cu[size_t(si)] + i, pos = ctx[size_t(si)] - qlen[size_t(si)] + i;
      for (int h = 0; h < H; h++)
        refAttend(p, tables.data() + size_t(si) * maxBlocks, q.data() + size_t(row) * ld + h * D, pos + 1,
                  h / (H / s.kvHeads), scale, ref.data() + size_t(row) * ld + h * D, window, cap);
    }
  const float tol = t == DType::F32 ? 1e-4f : 1.6e-2f;
  report(std::string("prefill_attention ") + dtypeName(t) + " " + s.name + " bs" + std::to_string(blockSize) + " N=" +
             std::to_string(N) + variant(window, cap),
         download(t, dO.get(), ref.size()), ref, tol, tol);
}

}  // namespace

void runAttentionChecks(const Shape& s) {
  for (DType t : {DType::BF16, DType::F32}) {
    checkDecode(s, t, 16, {1, 17, 300, 512, 513, 1500});
    checkPrefill(s, t, 16, {5, 40, 1}, {5, 100, 64});
  }
  checkDecode(s, DType::F16, 32, {2000, 33, 4097});
  checkPrefill(s, DType::F16, 32, {70, 3}, {70, 200});
  // Sliding windows (Mistral / Gemma local layers; a window wider than one split-K partition too)
  // and Gemma 2 soft-capping (attn_logit_softcapping 50).
  for (DType t : {DType::BF16, DType::F32}) {
    checkDecode(s, t, 16, {1, 17, 300, 1500}, 100);
    checkDecode(s, t, 16, {40, 2100}, 700, 50.0f);
    checkDecode(s, t, 16, {5, 600}, 0, 50.0f);
    checkPrefill(s, t, 16, {5, 40, 33}, {5, 100, 200}, 37);
    checkPrefill(s, t, 16, {40, 1}, {64, 90}, 0, 50.0f);
    checkPrefill(s, t, 16, {70}, {150}, 20, 30.0f);
  }
}

}  // namespace openlora::cuda_checks
