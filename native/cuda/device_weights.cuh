// The base model's weights on the device (device_weights.cu): every tensor of a Model
// (src/model.h) uploaded once as bf16 (Gemma norms as the Model holds them, 1 + w) (int8 linears stay int8 with their fp32 scales), q/k/v and
// gate/up stacked along the output axis so each is one GEMM. Plain host C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "../src/model.h"

namespace openlora::cuda {

/** One (possibly stacked) linear layer on the device: y = x W^T. */
struct DevLinear {
  void* w = nullptr;         // [out, in] bf16, or int8 when q8
  float* scale = nullptr;    // [out] fp32 per-channel scales (q8 only)
  bool q8 = false;
  int out = 0, in = 0;
  /** Bytes of the weight and its scales. */
  int64_t bytes() const { return int64_t(out) * in * (q8 ? 1 : 2) + (q8 ? int64_t(out) * 4 : 0); }
};

/** One decoder layer on the device; norms and biases bf16, nullptr where the model has none. */
struct DevLayer {
  void* inputNorm = nullptr;  // [H]
  void* postNorm = nullptr;   // [H] post_attention_layernorm: MLP input (Llama), attention output (Gemma)
  void* qNorm = nullptr;      // [headDim] q_norm (Qwen3, Gemma 3) or nullptr
  void* kNorm = nullptr;      // [headDim] k_norm or nullptr
  void* preFfnNorm = nullptr;   // [H] Gemma pre_feedforward_layernorm or nullptr
  void* postFfnNorm = nullptr;  // [H] Gemma post_feedforward_layernorm or nullptr
  DevLinear qkv;              // [Q + 2 KV, H]: rows of q_proj, then k_proj, then v_proj
  void* bqkv = nullptr;       // [Q + 2 KV] or nullptr
  DevLinear o;                // [H, Q]
  void* bo = nullptr;         // [H] or nullptr
  DevLinear gateUp;           // [2 I, H]: rows of gate_proj, then up_proj
  void* bGateUp = nullptr;    // [2 I] or nullptr
  DevLinear down;             // [H, I]
  void* bDown = nullptr;      // [H] or nullptr
};

/**
 * Owns the device copies of one Model's weights (current device; freed by the destructor).
 * upload() once; the members are read by the forward.
 */
class DeviceWeights {
 public:
  DeviceWeights() = default;
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;
  ~DeviceWeights();

  /** Upload every weight of `m` (synchronous copies). @throws Error (out_of_memory, device_error). */
  void upload(const Model& m);
  bool uploaded() const { return uploaded_; }
  /** Bytes of base weights one decode step streams (embedding rows excluded). */
  int64_t bytes() const { return bytes_; }

  void* embed = nullptr;      // [V, H] bf16
  std::vector<DevLayer> layers;
  void* finalNorm = nullptr;  // [H] bf16
  void* lmHead = nullptr;     // [V, H] bf16 (== embed when tied)
  float* invFreqLocal = nullptr;  // [rotaryDim / 2] fp32: Gemma 3 local layers' RoPE (ropeLocalInvFreq)

 private:
  void* alloc(size_t bytes, const char* what);
  /** Concatenate float vectors, convert to bf16, upload. */
  void* uploadBf16(std::initializer_list<const std::vector<float>*> parts, const char* what);
  /** A whole matrix as bf16 [out, in], row by row (dequantized when the host copy is quantized). */
  void* uploadLinearBf16(const Linear& l, const char* what);
  /** Stack linear layers along the output axis (same `in`); int8 when the model's are int8 per row (4-bit: bf16). */
  DevLinear uploadLinear(std::initializer_list<const Linear*> parts, const char* what);
  /** Upload `n` fp32 values. */
  float* uploadF32(const std::vector<float>& v, const char* what);

  std::vector<void*> allocs_;
  bool uploaded_ = false;
  int64_t bytes_ = 0;
};

/**
 * y [m, lin.out] (row stride ldY) = x [m, lin.in] (row stride ldX) W^T, bf16 activations
 * (cuBLAS when it loads, else our GEMM; int8 weights through launch_gemm_w8).
 * @throws Error (device_error) when the launcher fails.
 */
void linearForward(void* y, int64_t ldY, const void* x, int64_t ldX, const DevLinear& lin, int m, cudaStream_t stream,
                   const char* what);

}  // namespace openlora::cuda
