// Device sampling: logit processing, greedy / temperature / top-k / top-p, a seeded draw, and
// logprobs, for a batch of sequences. Semantics: sampling.cuh.
//
// Grid:  (num_seqs)       one block per sequence
// Block: (1024)           threads stride over the vocabulary; block reductions via shared memory
// Workspace: work [num_seqs, vocab] fp32, the processed logits (the raw ones stay untouched).
// Token masks (constrained decoding): disallowed tokens enter `work` as -inf, so they have zero
//   probability, never win the greedy argmax or the race (an allowed token always has a finite
//   score), and rank below every allowed token in top-k / top-p; logprobs stay of the raw logits.
// Selection without sorting: top-k and top-p thresholds are found by bisection over the
//   order-preserving uint32 image of the processed logits (32 counting / mass passes), then a
//   bisection over token ids resolves ties to the lower id, exactly as the CPU's
//   (prob desc, id asc) order. The draw is the exponential race argmax_i log p_i - log E_i
//   (E_i ~ Exp(1) from Philox4x32-10 keyed by the sequence's seed, counter (token id, step)),
//   a sample of p restricted to the kept set.
// Dtypes: logits fp32; reductions fp32 (counts exact below 2^24); the race in double.
// NOTE(why): ~100 passes over the row per sequence, from L2. FlashInfer-style rejection
// sampling would be faster; this is the simple, exactly specified version.
#include <cuda_runtime.h>

#include "sampling.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 1024;

/** Order-preserving map float -> uint32 (a > b  <=>  key(a) > key(b); -0 < +0). */
__device__ __forceinline__ uint32_t orderKey(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/** Philox4x32-10 (Salmon et al., SC'11; Random123 constants). */
__device__ __forceinline__ uint4 philox(uint2 key, uint4 c) {
#pragma unroll
  for (int i = 0; i < 10; i++) {
    if (i > 0) {
      key.x += 0x9E3779B9u;
      key.y += 0xBB67AE85u;
    }
    const uint32_t lo0 = 0xD2511F53u * c.x, hi0 = __umulhi(0xD2511F53u, c.x);
    const uint32_t lo1 = 0xCD9E8D57u * c.z, hi1 = __umulhi(0xCD9E8D57u, c.z);
    c = make_uint4(hi1 ^ c.y ^ key.x, lo1, hi0 ^ c.w ^ key.y, lo0);
  }
  return c;
}

/** -log(E), E ~ Exp(1), for (seed, step, token): the Gumbel noise of the race. */
__device__ __forceinline__ double gumbel(uint64_t seed, uint64_t step, int token) {
  const uint4 r = philox(make_uint2(uint32_t(seed), uint32_t(seed >> 32)),
                         make_uint4(uint32_t(token), uint32_t(step), uint32_t(step >> 32), 0x6f6c6f72u));
  const uint64_t bits = (uint64_t(r.x) << 32 | r.y) >> 11;  // 53 random bits
  const double u = (double(bits) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
  return -log(-log(u));
}

/** (v1, i1) before (v2, i2) in (value desc, id asc) order. */
__device__ __forceinline__ bool before(float v1, int i1, float v2, int i2) { return v1 > v2 || (v1 == v2 && i1 < i2); }

/** Block argmax in (value desc, id asc) order; every thread gets the winner. */
__device__ void blockArgmax(float& v, int& id, float* sv, int* si) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, id, o);
    if (before(ov, oi, v, id)) v = ov, id = oi;
  }
  __syncthreads();
  if (lane == 0) sv[warp] = v, si[warp] = id;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? sv[lane] : -INFINITY;
  id = lane < int(blockDim.x >> 5) ? si[lane] : INT32_MAX;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, id, o);
    if (before(ov, oi, v, id)) v = ov, id = oi;
  }
}

__global__ void __launch_bounds__(kBlock) sampleKernel(SamplingBatch b) {
  __shared__ float scratch[32];
  __shared__ float sv[32];
  __shared__ int si[32];
  const int s = blockIdx.x, V = b.vocab;
  const float* raw = b.logits + int64_t(s) * b.ld_logits;  // [vocab]
  float* work = b.workspace + int64_t(s) * V;              // [vocab]

  // 1. work = masked raw + logit_bias - penalties (-inf stays -inf: finite additions).
  const int mrow = b.mask_index ? b.mask_index[s] : -1;
  const uint32_t* mask = mrow >= 0 ? b.token_masks + int64_t(mrow) * b.mask_words : nullptr;  // [mask_words]
  for (int i = threadIdx.x; i < V; i += kBlock) work[i] = (!mask || ((mask[i >> 5] >> (i & 31)) & 1u)) ? raw[i] : -INFINITY;
  __syncthreads();
  if (b.bias_ptr && threadIdx.x == 0) {  // serial: a token may appear twice (the CPU adds both)
    for (int e = b.bias_ptr[s]; e < b.bias_ptr[s + 1]; e++) {
      const int tok = b.bias_tokens[e];
      if (tok >= 0 && tok < V) work[tok] += b.bias_values[e];
    }
  }
  __syncthreads();
  if (b.penalty_ptr) {
    const float fp = b.frequency_penalty ? b.frequency_penalty[s] : 0.0f;
    const float pp = b.presence_penalty ? b.presence_penalty[s] : 0.0f;
    for (int e = b.penalty_ptr[s] + threadIdx.x; e < b.penalty_ptr[s + 1]; e += kBlock) {
      const int tok = b.penalty_tokens[e], n = b.penalty_counts[e];
      if (tok >= 0 && tok < V && n > 0) work[tok] -= fp * float(n) + pp;
    }
  }
  __syncthreads();

  // 2. log-sum-exp of the raw logits (the logprobs are of the model, as computeLogprobs).
  float mraw = -INFINITY;
  for (int i = threadIdx.x; i < V; i += kBlock) mraw = fmaxf(mraw, raw[i]);
  mraw = block_max(mraw, scratch);
  float sraw = 0.0f;
  for (int i = threadIdx.x; i < V; i += kBlock) sraw += expf(raw[i] - mraw);
  sraw = block_sum(sraw, scratch);
  const float lse = mraw + logf(sraw);

  auto count = [&](auto pred) {
    float c = 0.0f;
    for (int i = threadIdx.x; i < V; i += kBlock) c += pred(i) ? 1.0f : 0.0f;
    return block_sum(c, scratch);
  };

  int chosen = 0;
  const float T = b.temperature[s];
  if (T <= 0.0f) {  // greedy: ties to the lowest id
    float v = -INFINITY;
    int id = INT32_MAX;
    for (int i = threadIdx.x; i < V; i += kBlock)
      if (before(work[i], i, v, id)) v = work[i], id = i;
    blockArgmax(v, id, sv, si);
    chosen = id < V ? id : 0;
  } else {
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += kBlock) mx = fmaxf(mx, work[i]);
    mx = block_max(mx, scratch);

    // 3. top-k: kept(i) = key > kth || (key == kth && i < kcut).
    uint32_t kth = 0;
    int kcut = V;
    const int k = b.top_k ? b.top_k[s] : 0;
    if (k > 0 && k < V) {
      uint32_t lo = 0, hi = 0xffffffffu;  // invariant: count(key >= lo) >= k
      while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2 + 1;
        if (count([&](int i) { return orderKey(work[i]) >= mid; }) >= float(k)) lo = mid;
        else hi = mid - 1;
      }
      kth = lo;
      const float need = float(k) - count([&](int i) { return orderKey(work[i]) > kth; });
      int clo = 1, chi = V;  // smallest cut with count(key == kth && i < cut) >= need
      while (clo < chi) {
        const int mid = (clo + chi) / 2;
        if (count([&](int i) { return i < mid && orderKey(work[i]) == kth; }) >= need) chi = mid;
        else clo = mid + 1;
      }
      kcut = clo;
    }
    auto keptK = [&](int i) {
      const uint32_t key = orderKey(work[i]);
      return key > kth || (key == kth && i < kcut);
    };
    auto prob = [&](int i) { return expf((work[i] - mx) / T); };
    auto mass = [&](auto pred) {
      float m = 0.0f;
      for (int i = threadIdx.x; i < V; i += kBlock)
        if (pred(i)) m += prob(i);
      return block_sum(m, scratch);
    };

    // 4. top-p over the top-k set: keep(i) = keptK(i) && (key > pth || (key == pth && i < pcut)).
    uint32_t pth = 0;
    int pcut = V;
    const float top_p = b.top_p ? b.top_p[s] : 1.0f;
    if (top_p < 1.0f) {
      const float P = top_p * mass(keptK);
      uint32_t lo = 0, hi = 0xffffffffu;  // invariant: mass(keptK && key >= lo) >= P
      while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2 + 1;
        if (mass([&](int i) { return keptK(i) && orderKey(work[i]) >= mid; }) >= P) lo = mid;
        else hi = mid - 1;
      }
      pth = lo;
      const float above = mass([&](int i) { return keptK(i) && orderKey(work[i]) > pth; });
      int clo = 1, chi = V;  // smallest cut reaching P (V when rounding never reaches it)
      while (clo < chi) {
        const int mid = (clo + chi) / 2;
        if (above + mass([&](int i) { return i < mid && keptK(i) && orderKey(work[i]) == pth; }) >= P) chi = mid;
        else clo = mid + 1;
      }
      pcut = clo;
    }
    auto kept = [&](int i) {
      if (!keptK(i)) return false;
      const uint32_t key = orderKey(work[i]);
      return key > pth || (key == pth && i < pcut);
    };

    // 5. the draw: argmax over kept of (w - mx) / T + Gumbel(seed, step, i).
    const uint64_t seed = b.seeds ? b.seeds[s] : 0, step = b.steps ? b.steps[s] : 0;
    float v = -INFINITY;
    int id = INT32_MAX;
    for (int i = threadIdx.x; i < V; i += kBlock) {
      if (!kept(i)) continue;
      const float score = float(double((work[i] - mx) / T) + gumbel(seed, step, i));
      if (before(score, i, v, id)) v = score, id = i;
    }
    blockArgmax(v, id, sv, si);
    chosen = id < V ? id : 0;
  }

  // 6. outputs.
  if (threadIdx.x == 0) {
    b.out_tokens[s] = chosen;
    if (b.out_logprobs) b.out_logprobs[s] = raw[chosen] - lse;
  }
  if (b.max_top_logprobs > 0 && b.out_top_tokens && b.out_top_logprobs) {
    const int want = b.num_top_logprobs ? min(b.num_top_logprobs[s], b.max_top_logprobs) : b.max_top_logprobs;
    float pv = INFINITY;
    int pi = -1;
    for (int n = 0; n < b.max_top_logprobs; n++) {
      float v = -INFINITY;
      int id = INT32_MAX;
      if (n < want) {
        for (int i = threadIdx.x; i < V; i += kBlock)
          if (before(pv, pi, raw[i], i) && before(raw[i], i, v, id)) v = raw[i], id = i;
      }
      blockArgmax(v, id, sv, si);  // uniform: every thread runs every iteration
      if (threadIdx.x == 0) {
        const bool ok = n < want && id < V;
        b.out_top_tokens[int64_t(s) * b.max_top_logprobs + n] = ok ? id : -1;
        b.out_top_logprobs[int64_t(s) * b.max_top_logprobs + n] = ok ? v - lse : -INFINITY;
      }
      pv = v;
      pi = id;
    }
  }
}

}  // namespace

size_t sampling_workspace_bytes(int num_seqs, int vocab) { return size_t(num_seqs) * size_t(vocab) * sizeof(float); }

cudaError_t launch_sample(const SamplingBatch& b, cudaStream_t stream) {
  if (b.num_seqs < 0 || b.vocab <= 0 || b.ld_logits < b.vocab || !b.logits || !b.temperature || !b.out_tokens ||
      !b.workspace || b.max_top_logprobs < 0 || b.max_top_logprobs > kMaxTopLogprobs ||
      (b.penalty_ptr && (!b.penalty_tokens || !b.penalty_counts)) || (b.bias_ptr && (!b.bias_tokens || !b.bias_values)) ||
      (b.mask_index && (!b.token_masks || b.mask_words != (b.vocab + 31) / 32)))
    return invalid_argument("launch_sample: num_seqs=%d vocab=%d ld_logits=%lld max_top_logprobs=%d (<= %d) mask_words=%d "
                            "(ceil(vocab / 32) with masks), or a required pointer is null (logits, temperature, out_tokens, "
                            "workspace, CSR arrays, token_masks)",
                            b.num_seqs, b.vocab, (long long)b.ld_logits, b.max_top_logprobs, kMaxTopLogprobs, b.mask_words);
  if (b.num_seqs == 0) return cudaSuccess;
  sampleKernel<<<b.num_seqs, kBlock, 0, stream>>>(b);
  return launch_status("launch_sample");
}

}  // namespace openlora::cuda
