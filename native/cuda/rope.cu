// Rotary position embedding, HF `rotate_half` convention, in place on q and k.
//
// Grid:  (num_tokens)     one block per token
// Block: (128)            threads stride over (head, j) pairs, j < rotary_dim / 2, q heads then k heads
// Dtypes: f32 | f16 | bf16 for q and k; angle, cos, sin and the rotation in fp32, one rounding.
// Shapes: q [num_tokens, num_heads, head_dim] (token stride ld_q); k [num_tokens, num_kv_heads,
//   head_dim] (token stride ld_k); positions [num_tokens] int32; inv_freq [tables, rotary_dim / 2]
//   fp32, table_of_token [num_tokens] int32 (or nullptr: table 0). Dims past rotary_dim pass through.
// NOTE(why): sincosf (not __sincosf): positions reach 10^5 and the fast intrinsics lose all
// accuracy there. HF rounds cos/sin to the activation dtype before the multiply; we keep them in
// fp32 (at most one bf16 ulp of difference, within the kernel check's tolerance).
#include <cuda_runtime.h>

#include <cmath>

#include "rope.cuh"

namespace openlora::cuda {

namespace {

constexpr int kBlock = 128;

template <typename T>
__global__ void __launch_bounds__(kBlock) ropeKernel(T* q, int64_t ld_q, T* k, int64_t ld_k, const int32_t* positions,
                                                     const float* __restrict__ inv_freq, const int32_t* table_of_token,
                                                     int num_heads, int num_kv_heads, int head_dim, int rotary_dim,
                                                     float mscale) {
  const int half = rotary_dim / 2;
  const float pos = float(positions[blockIdx.x]);
  const float* inv = inv_freq + (table_of_token ? int64_t(table_of_token[blockIdx.x]) * half : 0);  // [half]
  const int pairs = (num_heads + num_kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += kBlock) {
    const int head = p / half, j = p % half;
    T* x = head < num_heads ? q + int64_t(blockIdx.x) * ld_q + int64_t(head) * head_dim
                            : k + int64_t(blockIdx.x) * ld_k + int64_t(head - num_heads) * head_dim;  // [head_dim]
    float s, c;
    sincosf(pos * inv[j], &s, &c);
    c *= mscale;
    s *= mscale;
    const float x1 = to_float(x[j]), x2 = to_float(x[j + half]);
    x[j] = from_float<T>(x1 * c - x2 * s);
    x[j + half] = from_float<T>(x2 * c + x1 * s);
  }
}

}  // namespace

cudaError_t launch_rope(void* q, int64_t ld_q, void* k, int64_t ld_k, const int32_t* positions, const float* inv_freq,
                        const int32_t* table_of_token, int num_tokens, int num_heads, int num_kv_heads, int head_dim,
                        int rotary_dim, float mscale, DType dtype, cudaStream_t stream) {
  if (num_tokens < 0 || num_heads < 0 || num_kv_heads < 0 || head_dim <= 0 || head_dim > 512 || rotary_dim < 2 ||
      rotary_dim % 2 != 0 || rotary_dim > head_dim || ld_q < int64_t(num_heads) * head_dim ||
      (num_kv_heads > 0 && (k == nullptr || ld_k < int64_t(num_kv_heads) * head_dim)))
    return invalid_argument("launch_rope: num_tokens=%d num_heads=%d num_kv_heads=%d head_dim=%d rotary_dim=%d ld_q=%lld ld_k=%lld",
                            num_tokens, num_heads, num_kv_heads, head_dim, rotary_dim, (long long)ld_q, (long long)ld_k);
  if (num_tokens == 0 || num_heads + num_kv_heads == 0) return cudaSuccess;
  return dispatch_dtype(dtype, "rope", [&](auto tag) {
    using T = typename decltype(tag)::type;
    ropeKernel<T><<<num_tokens, kBlock, 0, stream>>>(static_cast<T*>(q), ld_q, static_cast<T*>(k), ld_k, positions,
                                                     inv_freq, table_of_token, num_heads, num_kv_heads, head_dim,
                                                     rotary_dim, mscale);
    return launch_status("launch_rope");
  });
}

void rope_inv_freq(double theta, int head_dim, RopeScalingKind kind, double factor, double low_freq_factor,
                   double high_freq_factor, double original_max_position_embeddings, float* out) {
  const int half = head_dim / 2;
  for (int j = 0; j < half; j++) {
    // HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), in float32.
    const float expo = float(2 * j) / float(head_dim);
    out[j] = 1.0f / std::pow(float(theta), expo);
  }
  if (kind == RopeScalingKind::Linear) {
    for (int j = 0; j < half; j++) out[j] = float(out[j] / factor);
  } else if (kind == RopeScalingKind::Llama3) {
    const double old_ctx = original_max_position_embeddings;
    const double low_wavelen = old_ctx / low_freq_factor;
    const double high_wavelen = old_ctx / high_freq_factor;
    for (int j = 0; j < half; j++) {
      const double f = out[j];
      const double wavelen = 2 * M_PI / f;
      double scaled = wavelen > low_wavelen ? f / factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {  // medium band: interpolate
        const double smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
        scaled = (1 - smooth) * scaled / factor + smooth * scaled;
      }
      out[j] = float(scaled);
    }
  }
}

}  // namespace openlora::cuda
