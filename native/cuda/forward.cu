// CudaForward: the forward of native/cpu/forward.cc (cpu::forward) on one CUDA device, step for
// step, with the launchers of native/cuda/*.cuh: the layer loop only. Beside it:
// device_weights.* (the base weights on the device), adapter_pool.* (LoRA slot pools and their
// uploads), staging.* (one step's inputs from the StepPlan, src/step_plan.h, which the CPU forward
// reads too). See forward.cuh.
//
// Dtypes: activations, weights and KV cache bf16; every kernel accumulates in fp32; the logits
// come back fp32 ([R, vocab], as cpu::forward) so the engine's CPU sampler is unchanged.
// (Device sampling, launch_sample of sampling.cuh, can replace that copy later.)
//
// One step (forward()):
//   StepPlan -> staging (one copy) -> embedding (x sqrt(H) for Gemma) -> per layer [rms_norm
//     (fused with the previous residual add), qkv GEMM (+bias), LoRA q/k/v, q/k norms (Qwen3,
//     Gemma 3), rope (partial rotary; per-row table: longrope / dynamic NTK; Gemma 3 local
//     layers' base), reshape_and_cache, attention (decode kernel for the leading single-token
//     entries, prefill kernel for the rest; scale, soft-cap and sliding window of the config),
//     o GEMM (+bias), LoRA o, (Gemma: post-attention norm), fused add + rms_norm (Gemma: the
//     pre-feedforward norm), gate_up GEMM (+bias), LoRA gate/up, silu_mul or gelu_tanh_mul,
//     down GEMM (+bias), LoRA down, (Gemma: post-feedforward norm)]
//   -> fused add + final norm -> gather the rows that need logits -> lm_head (fp32 out)
//   (-> Gemma 2 final soft-cap) -> host.
// q/k/v and gate/up are fused along the output axis ([Q + 2 KV, H] and [2 I, H]): one GEMM
// each, the launchers take the row strides.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "../src/engine_options.h"
#include "../src/errors.h"
#include "../src/step_plan.h"
#include "adapter_pool.cuh"
#include "bgmv.cuh"
#include "cublas_loader.cuh"
#include "device_memory.cuh"
#include "device_weights.cuh"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "forward.cuh"
#include "paged_attention.cuh"
#include "prefill_attention.cuh"
#include "reshape_and_cache.cuh"
#include "rms_norm.cuh"
#include "rope.cuh"
#include "sgmv.cuh"
#include "staging.cuh"
#include "swiglu.cuh"

namespace openlora {

namespace {

using cuda::check;
using cuda::checkLaunch;
using cuda::at;
using cuda::DType;
constexpr DType kBf16 = DType::BF16;
static_assert(cuda::kLoraMaxRank == engine_defaults::kCudaMaxLoraRank, "engineDefaults().cudaMaxLoraRank must match the kernels");

/** One attached KV pool: [layers, 2 (K, V), blocks, kvHeads, blockSize, headDim] bf16. */
struct DevKv {
  cuda::DevBuf buf;
  int numBlocks = 0, blockSize = 0;
  int64_t plane = 0;  // elements of one layer's K (or V)
};

class CudaForward final : public ForwardBackend {
 public:
  explicit CudaForward(std::shared_ptr<const Model> model) : model_(std::move(model)) {
    // Blocks may be dropped only when every layer has a window (kv_cache.h dropOutsideWindow).
    for (int w : model_->config().layerWindow) maxWindow_ = w <= 0 || maxWindow_ < 0 ? -1 : std::max(maxWindow_, w);
    if (maxWindow_ < 0) maxWindow_ = 0;
    check(cudaSetDevice(device_), "cudaSetDevice(0)");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate (compute)");
    adapters_ = std::make_unique<cuda::AdapterPool>();
  }

  ~CudaForward() override {
    (void)cudaSetDevice(device_);
    if (stream_) (void)cudaStreamSynchronize(stream_);
    adapters_.reset();
    kv_.clear();
    weights_.reset();
    if (stream_) (void)cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }
  bool complete() const override { return true; }
  int64_t weightBytes() const override { return weights_ ? weights_->bytes() : 0; }
  int64_t memoryAvailableBytes() const override {
    size_t freeBytes = 0, total = 0;
    if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&freeBytes, &total) != cudaSuccess) return -1;
    return int64_t(freeBytes);
  }

  void uploadWeights() override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    if (!weights_) weights_ = std::make_unique<cuda::DeviceWeights>();
    weights_->upload(*model_);
  }

  void attachKv(KvCache& pool) override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    const ModelConfig& c = model_->config();
    if (pool.numLayers() != c.numHiddenLayers || pool.numKvHeads() != c.numKeyValueHeads || pool.headDim() != c.headDim) {
      throw std::runtime_error("CUDA forward: attachKv: the pool's layers/kv heads/head dim (" + std::to_string(pool.numLayers()) +
                               "/" + std::to_string(pool.numKvHeads()) + "/" + std::to_string(pool.headDim()) +
                               ") do not match the model");
    }
    DevKv& d = kv_[&pool];
    d.numBlocks = pool.allocator().numBlocks();
    d.blockSize = pool.blockSize();
    d.plane = int64_t(d.numBlocks) * c.numKeyValueHeads * d.blockSize * c.headDim;
    d.buf.ensure(size_t(2 * c.numHiddenLayers) * size_t(d.plane) * 2, "cudaMalloc (KV pool)");
  }

  void detachKv(KvCache& pool) override {
    (void)cudaSetDevice(device_);
    kv_.erase(&pool);
  }

  void reserveAdapters(int maxSlots, int maxRank) override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    adapters_->reserve(model_->config(), maxSlots, maxRank);
  }

  void uploadAdapter(int slot, const LoraAdapter& ad) override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    adapters_->upload(model_->config(), slot, ad);
  }

  void waitAdapters() override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    adapters_->wait();
  }

  void forward(const std::vector<BatchEntry>& batch, std::vector<float>* logits) override;

 private:
  /** y[rows of the step] += LoRA of (layer, module) on x (the staging's LoraLaunch). */
  void applyLora(int layer, LoraModule m, const void* x, int64_t ldX, void* y, int64_t ldY, int T);

  std::shared_ptr<const Model> model_;
  int maxWindow_ = 0;  // the widest sliding window when every layer has one, else 0
  int device_ = 0;
  cudaStream_t stream_ = nullptr;  // compute
  std::unique_ptr<cuda::DeviceWeights> weights_;
  std::unique_ptr<cuda::AdapterPool> adapters_;
  std::unordered_map<const KvCache*, DevKv> kv_;

  // Per-step state (engine thread), grown on demand.
  StepPlan plan_;
  cuda::StepStaging staging_;
  cuda::DevBuf x_, xn_, qkv_, attn_, proj_, gu_, sel_, logits_, loraTmp_, attnWs_;
};

void CudaForward::applyLora(int layer, LoraModule m, const void* x, int64_t ldX, void* y, int64_t ldY, int T) {
  const cuda::LoraLaunch& p = staging_.lora(layer, int(m));
  if (p.numTerms == 0) return;
  const cuda::DevLoraPool& d = adapters_->pool(layer, int(m));
  const int maxRank = adapters_->maxRank();
  float* tmp = static_cast<float*>(loraTmp_.p);
  const cuda::StepStaging& s = staging_;
  if (p.bgmv) {
    checkLaunch(cuda::launch_bgmv_shrink(tmp, x, ldX, d.a, d.rank, s.dev<int32_t>(p.termRows), s.dev<int32_t>(p.termSlot),
                                         p.numTerms, d.in, maxRank, kBf16, stream_),
                "bgmv shrink");
    checkLaunch(cuda::launch_bgmv_expand(y, ldY, tmp, d.bt, d.rank, s.dev<int32_t>(p.termRows), s.dev<int32_t>(p.termSlot),
                                         s.dev<float>(p.termScale), p.numTerms, d.out, maxRank, kBf16, stream_),
                "bgmv expand");
    return;
  }
  checkLaunch(cuda::launch_sgmv_shrink(tmp, x, ldX, d.a, d.rank, s.dev<int32_t>(p.termRows), s.dev<int32_t>(p.segStart),
                                       s.dev<int32_t>(p.segSlot), p.numSegs, p.maxSegLen, p.numTerms, d.in, maxRank, kBf16, stream_),
              "sgmv shrink");
  checkLaunch(cuda::launch_sgmv_expand(y, ldY, tmp, d.bt, d.rank, s.dev<int32_t>(p.rowPtr), s.dev<int32_t>(p.rowTerms),
                                       s.dev<int32_t>(p.termSlot), s.dev<float>(p.termScale), T, d.out, maxRank, kBf16, stream_),
              "sgmv expand");
}

void CudaForward::forward(const std::vector<BatchEntry>& batch, std::vector<float>* logits) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  if (!weights_ || !weights_->uploaded()) throw std::runtime_error("CUDA forward: forward before uploadWeights");
  const ModelConfig& c = model_->config();
  const int H = c.hiddenSize, I = c.intermediateSize, Q = c.qDim(), KV = c.kvDim(), V = c.vocabSize;
  const int QKV = Q + 2 * KV, L = c.numHiddenLayers, D = c.headDim;
  const int E = int(batch.size());
  if (E == 0) {
    logits->clear();
    return;
  }
  // --- The step's plan (as cpu::forward) and its staging; every entry must use one attached pool.
  const KvCache* pool = batch[0].kv ? &batch[0].kv->cache() : nullptr;
  for (const BatchEntry& e : batch) {
    if (e.kv && &e.kv->cache() != pool) throw std::runtime_error("CUDA forward: every entry of a step must use the same KV pool");
  }
  plan_.build(batch, c);
  auto kvIt = kv_.find(pool);
  if (kvIt == kv_.end()) throw std::runtime_error("CUDA forward: the batch's KV pool was not attached (attachKv)");
  DevKv& kv = kvIt->second;
  const int bs = kv.blockSize;
  staging_.build(plan_, kv.numBlocks, bs, adapters_->slots(), model_->ropeInvFreq(), model_->ropeLongInvFreq(), maxWindow_);
  const int T = plan_.numRows(), R = plan_.numLogitRows(), maxBlocks = plan_.maxBlocks();
  const int nDecode = staging_.numDecode(), maxCtxDecode = staging_.maxContextDecode(), maxQLen = staging_.maxQueryLen();

  // --- Buffers.
  void* x = x_.ensure(size_t(T) * H * 2, "cudaMalloc (x)");
  void* xn = xn_.ensure(size_t(T) * H * 2, "cudaMalloc (xn)");
  void* qkv = qkv_.ensure(size_t(T) * QKV * 2, "cudaMalloc (qkv)");
  void* attn = attn_.ensure(size_t(T) * Q * 2, "cudaMalloc (attn)");
  void* proj = proj_.ensure(size_t(T) * H * 2, "cudaMalloc (proj)");
  void* gu = gu_.ensure(size_t(T) * 2 * I * 2, "cudaMalloc (gate_up)");
  void* sel = sel_.ensure(size_t(R) * H * 2, "cudaMalloc (sel)");
  float* lg = static_cast<float*>(logits_.ensure(size_t(R) * V * sizeof(float), "cudaMalloc (logits)"));
  if (staging_.maxTerms() > 0) loraTmp_.ensure(size_t(staging_.maxTerms()) * adapters_->maxRank() * sizeof(float), "cudaMalloc (LoRA tmp)");
  size_t wsBytes = 0;
  if (nDecode > 0) {
    wsBytes = cuda::paged_attention_decode_workspace_bytes(nDecode, c.numAttentionHeads, D, maxCtxDecode);
    if (wsBytes > 0) attnWs_.ensure(wsBytes, "cudaMalloc (attention workspace)");
  }

  // --- Wait for adapter uploads, then stage this step's inputs.
  adapters_->streamWait(stream_);
  staging_.upload(stream_);
  const cuda::StepStaging& st = staging_;
  const int32_t* dIds = st.dev<int32_t>(st.ids);
  const int32_t* dPos = st.dev<int32_t>(st.pos);
  const int64_t* dSlots = st.dev<int64_t>(st.slots);
  const int32_t* dBt = st.dev<int32_t>(st.tables);
  const int32_t* dCtx = st.dev<int32_t>(st.ctx);
  const int32_t* dCuq = st.dev<int32_t>(st.cuq);
  const int32_t* dGather = st.dev<int32_t>(st.gather);
  const float* dRopeTables = st.dev<float>(st.ropeTables);
  const int32_t* dRopeIndex = st.dev<int32_t>(st.ropeIndex);
  const float eps = float(c.rmsNormEps);
  const cuda::DeviceWeights& dw = *weights_;
  const bool gemma = c.gemmaNorms;

  checkLaunch(cuda::launch_embedding(dIds, dw.embed, x, H, T, H, V, kBf16, stream_), "embedding");
  if (c.embedScale != 1.0f) {
    // Gemma: hidden_states * normalizer, the normalizer a tensor of the activation dtype (HF
    // Gemma2Model.forward), so sqrt(hidden_size) rounded to bf16 as HF's bf16 inference does.
    checkLaunch(cuda::launch_scale(x, int64_t(T) * H, bf16ToFloat(floatToBf16(c.embedScale)), kBf16, stream_), "embedding scale");
  }
  for (int l = 0; l < L; l++) {
    const cuda::DevLayer& w = dw.layers[size_t(l)];
    // --- self-attention block: h = h + o_proj(attn(input_layernorm(h)))
    if (l == 0) {
      checkLaunch(cuda::launch_rms_norm(x, H, w.inputNorm, xn, H, T, H, eps, kBf16, stream_), "rms_norm (input)");
    } else {  // x += proj (the previous layer's MLP output), xn = input_layernorm(x)
      checkLaunch(cuda::launch_fused_add_rms_norm(proj, H, x, w.inputNorm, xn, H, T, H, eps, kBf16, stream_), "fused_add_rms_norm (input)");
    }
    cuda::linearForward(qkv, QKV, xn, H, w.qkv, T, stream_, "q/k/v_proj");
    checkLaunch(cuda::launch_add_bias(qkv, QKV, w.bqkv, T, QKV, kBf16, stream_), "add_bias (q/k/v_proj)");
    applyLora(l, LoraModule::Q, xn, H, qkv, QKV, T);
    applyLora(l, LoraModule::K, xn, H, at(qkv, Q), QKV, T);
    applyLora(l, LoraModule::V, xn, H, at(qkv, Q + KV), QKV, T);
    if (w.qNorm) {  // Qwen3Attention / Gemma3Attention: q_norm, k_norm over each head's head_dim, before RoPE
      checkLaunch(cuda::launch_head_rms_norm(qkv, QKV, w.qNorm, qkv, QKV, T, c.numAttentionHeads, D, eps, kBf16, stream_), "q_norm");
      checkLaunch(cuda::launch_head_rms_norm(at(qkv, Q), QKV, w.kNorm, at(qkv, Q), QKV, T, c.numKeyValueHeads, D, eps, kBf16, stream_),
                  "k_norm");
    }
    // Global layers: each row's table from the plan (longrope / dynamic NTK by its entry's length),
    // mscale = the attention factor; Gemma 3's local layers: their own base, mscale 1 (as cpu::forward).
    const bool local = c.layerLocalRope[size_t(l)];
    checkLaunch(cuda::launch_rope(qkv, QKV, at(qkv, Q), QKV, dPos, local ? dw.invFreqLocal : dRopeTables, local ? nullptr : dRopeIndex, T,
                                  c.numAttentionHeads, c.numKeyValueHeads, D, c.rotaryDim,
                                  local ? 1.0f : float(c.ropeScaling.attentionFactor), kBf16, stream_),
                "rope");
    const int window = c.layerWindow[size_t(l)];  // 0: global; else keys (p - window, p]
    void* kCache = at(kv.buf.p, (int64_t(l) * 2) * kv.plane);
    void* vCache = at(kv.buf.p, (int64_t(l) * 2 + 1) * kv.plane);
    checkLaunch(cuda::launch_reshape_and_cache(at(qkv, Q), QKV, at(qkv, Q + KV), QKV, kCache, vCache, dSlots, T, c.numKeyValueHeads,
                                               D, bs, kBf16, stream_),
                "reshape_and_cache");
    if (nDecode > 0) {  // rows [0, nDecode): one per entry
      checkLaunch(cuda::launch_paged_attention_decode(attn, Q, qkv, QKV, kCache, vCache, dBt, maxBlocks, dCtx, maxCtxDecode, nDecode,
                                                      c.numAttentionHeads, c.numKeyValueHeads, D, bs, c.attnScale, c.attnSoftcap,
                                                      window, static_cast<float*>(attnWs_.p), wsBytes, kBf16, stream_),
                  "paged_attention_decode");
    }
    if (nDecode < E) {  // rows [nDecode, T): entries nDecode.. (cu_seqlens relative to row nDecode)
      checkLaunch(cuda::launch_prefill_attention(at(attn, int64_t(nDecode) * Q), Q, at(qkv, int64_t(nDecode) * QKV), QKV, kCache,
                                                 vCache, dBt + size_t(nDecode) * maxBlocks, maxBlocks, dCuq, dCtx + nDecode,
                                                 E - nDecode, maxQLen, c.numAttentionHeads, c.numKeyValueHeads, D, bs, c.attnScale,
                                                 c.attnSoftcap, window, kBf16, stream_),
                  "prefill_attention");
    }
    cuda::linearForward(proj, H, attn, Q, w.o, T, stream_, "o_proj");
    checkLaunch(cuda::launch_add_bias(proj, H, w.bo, T, H, kBf16, stream_), "add_bias (o_proj)");
    applyLora(l, LoraModule::O, attn, Q, proj, H, T);
    // Gemma2DecoderLayer: h = h + post_attention_layernorm(attn(...)).
    if (gemma) checkLaunch(cuda::launch_rms_norm(proj, H, w.postNorm, proj, H, T, H, eps, kBf16, stream_), "rms_norm (post-attention)");
    // --- MLP block: h = h + down_proj(act(gate_proj(x)) * up_proj(x)), x = post_attention_layernorm(h)
    // (Gemma: x = pre_feedforward_layernorm(h), and post_feedforward_layernorm on the MLP output).
    checkLaunch(cuda::launch_fused_add_rms_norm(proj, H, x, gemma ? w.preFfnNorm : w.postNorm, xn, H, T, H, eps, kBf16, stream_),
                "fused_add_rms_norm (MLP input)");
    cuda::linearForward(gu, 2 * I, xn, H, w.gateUp, T, stream_, "gate/up_proj");
    checkLaunch(cuda::launch_add_bias(gu, 2 * I, w.bGateUp, T, 2 * I, kBf16, stream_), "add_bias (gate/up_proj)");
    applyLora(l, LoraModule::Gate, xn, H, gu, 2 * I, T);
    applyLora(l, LoraModule::Up, xn, H, at(gu, I), 2 * I, T);
    if (c.hiddenAct == Activation::GeluTanh) {
      checkLaunch(cuda::launch_gelu_tanh_mul(gu, 2 * I, at(gu, I), 2 * I, gu, 2 * I, T, I, kBf16, stream_), "gelu_tanh_mul");
    } else {
      checkLaunch(cuda::launch_silu_mul(gu, 2 * I, at(gu, I), 2 * I, gu, 2 * I, T, I, kBf16, stream_), "silu_mul");
    }
    cuda::linearForward(proj, H, gu, 2 * I, w.down, T, stream_, "down_proj");
    checkLaunch(cuda::launch_add_bias(proj, H, w.bDown, T, H, kBf16, stream_), "add_bias (down_proj)");
    applyLora(l, LoraModule::Down, gu, 2 * I, proj, H, T);
    if (gemma) checkLaunch(cuda::launch_rms_norm(proj, H, w.postFfnNorm, proj, H, T, H, eps, kBf16, stream_), "rms_norm (post-feedforward)");
  }
  // x += proj (last MLP), xn = norm(x); then only the rows that need logits (an embedding
  // gather over xn's rows) go through lm_head, fp32 out.
  checkLaunch(cuda::launch_fused_add_rms_norm(proj, H, x, dw.finalNorm, xn, H, T, H, eps, kBf16, stream_), "fused_add_rms_norm (final)");
  checkLaunch(cuda::launch_embedding(dGather, xn, sel, H, R, H, T, kBf16, stream_), "gather logit rows");
  checkLaunch(cuda::launch_gemm_best(lg, V, DType::F32, sel, H, dw.lmHead, H, R, V, H, 1.0f, 0.0f, kBf16, stream_), "lm_head");
  if (c.finalSoftcap > 0) {  // Gemma 2 final_logit_softcapping, on the fp32 logits
    checkLaunch(cuda::launch_softcap(lg, int64_t(R) * V, c.finalSoftcap, DType::F32, stream_), "final logit soft-capping");
  }
  logits->resize(size_t(R) * size_t(V));
  check(cudaMemcpyAsync(logits->data(), lg, size_t(R) * V * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download logits");
  check(cudaStreamSynchronize(stream_), "forward step");
  for (const BatchEntry& e : batch) e.kv->setLength(e.startPos + e.numTokens);
}

}  // namespace

std::unique_ptr<ForwardBackend> makeCudaForward(std::shared_ptr<const Model> model) {
  return std::make_unique<CudaForward>(std::move(model));
}

}  // namespace openlora
