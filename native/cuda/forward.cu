// CudaForward: the Llama forward of native/cpu/forward.cc (cpu::forward) on one CUDA device,
// step for step, with the launchers of native/cuda/*.cuh. Host code plus one small kernel
// (add_bias). See forward.cuh.
//
// Dtypes: activations, weights and KV cache bf16; every kernel accumulates in fp32; the logits
// come back fp32 ([R, vocab], as cpu::forward) so the engine's CPU sampler is unchanged.
// (Device sampling, launch_sample of sampling.cuh, can replace that copy later.)
//
// One step (forward()):
//   staging: token ids, positions, slot mapping, block tables, context lens, cu_seqlens,
//     logit-row gather list and every (layer, module)'s LoRA term arrays are packed into one
//     pinned host arena and copied with one cudaMemcpyAsync;
//   embedding -> per layer [rms_norm (fused with the previous residual add), qkv GEMM (+bias),
//     LoRA q/k/v, rope, reshape_and_cache, attention (decode kernel for the leading single-token
//     entries, prefill kernel for the rest), o GEMM (+bias), LoRA o, fused add + rms_norm,
//     gate_up GEMM (+bias), LoRA gate/up, silu_mul, down GEMM (+bias), LoRA down]
//   -> fused add + final norm -> gather the rows that need logits -> lm_head (fp32 out) -> host.
// q/k/v and gate/up are fused along the output axis ([Q + 2 KV, H] and [2 I, H]): one GEMM
// each, the launchers take the row strides.
//
// add_bias kernel: grid (rows), block 256 threads striding the columns; y[r, :] += b (fp32
// add, one rounding to bf16); in place.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "../src/engine_options.h"
#include "../src/errors.h"
#include "../src/model.h"
#include "bgmv.cuh"
#include "common.cuh"
#include "cublas_loader.cuh"
#include "embedding.cuh"
#include "forward.cuh"
#include "paged_attention.cuh"
#include "prefill_attention.cuh"
#include "quant_int8.cuh"
#include "reshape_and_cache.cuh"
#include "rms_norm.cuh"
#include "rope.cuh"
#include "sgmv.cuh"
#include "swiglu.cuh"

namespace openlora {

namespace {

using cuda::DType;
constexpr DType kBf16 = DType::BF16;
static_assert(cuda::kLoraMaxRank == engine_defaults::kCudaMaxLoraRank, "engineDefaults().cudaMaxLoraRank must match the kernels");

// ---------------------------------------------------------------------------------------------
// Errors: every status becomes an Error (errors.h: out_of_memory or device_error; STYLE.md: never abort).

/** A CUDA runtime call (cudaMalloc, cudaMemcpyAsync, ...). */
void ck(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
  raise(e == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::DeviceError,
        std::string("CUDA forward: ") + what + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

/** A launcher of native/cuda/*.cuh: its own message (last_error_message) when it set one. */
void lk(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  const char* msg = cuda::last_error_message();
  raise(e == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::DeviceError,
        std::string("CUDA forward: ") + what + ": " + (msg && *msg ? std::string(msg) : std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e)));
}

// ---------------------------------------------------------------------------------------------
// The one kernel of this file.

__global__ void add_bias_kernel(__nv_bfloat16* y, int64_t ld, const __nv_bfloat16* b, int n) {
  __nv_bfloat16* row = y + int64_t(blockIdx.x) * ld;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    row[j] = __float2bfloat16_rn(__bfloat162float(row[j]) + __bfloat162float(b[j]));
  }
}

/** y[r, :n] += b for r < rows. @param y [rows, n] bf16, row stride ld; @param b [n] bf16. */
void addBias(void* y, int64_t ld, const void* b, int rows, int n, cudaStream_t s) {
  if (!b || rows <= 0) return;
  add_bias_kernel<<<unsigned(rows), 256, 0, s>>>(static_cast<__nv_bfloat16*>(y), ld, static_cast<const __nv_bfloat16*>(b), n);
  ck(cudaGetLastError(), "add_bias");
}

// ---------------------------------------------------------------------------------------------
// Host helpers.

/** bf16 element offset of a device pointer. */
void* at(void* p, int64_t elems) { return static_cast<uint16_t*>(p) + elems; }

/** A growable device buffer. */
struct DevBuf {
  void* p = nullptr;
  size_t cap = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { reset(); }
  void reset() {
    if (p) (void)cudaFree(p);
    p = nullptr;
    cap = 0;
  }
  /** At least `bytes` (contents are lost when it grows). */
  void* ensure(size_t bytes, const char* what) {
    if (bytes <= cap && p) return p;
    reset();
    ck(cudaMalloc(&p, std::max<size_t>(bytes, 256)), what);
    cap = std::max<size_t>(bytes, 256);
    return p;
  }
};

/** A growable pinned host buffer. */
struct PinnedBuf {
  void* p = nullptr;
  size_t cap = 0;
  PinnedBuf() = default;
  PinnedBuf(const PinnedBuf&) = delete;
  PinnedBuf& operator=(const PinnedBuf&) = delete;
  ~PinnedBuf() {
    if (p) (void)cudaFreeHost(p);
  }
  void* ensure(size_t bytes, const char* what) {
    if (bytes <= cap && p) return p;
    if (p) (void)cudaFreeHost(p);
    p = nullptr;
    cap = 0;
    const size_t n = std::max<size_t>(bytes + bytes / 2, 4096);
    ck(cudaHostAlloc(&p, n, cudaHostAllocDefault), what);
    cap = n;
    return p;
  }
};

// ---------------------------------------------------------------------------------------------
// Device model.

/** One (possibly fused) linear layer on the device: y = x W^T. */
struct DevLinear {
  void* w = nullptr;         // [out, in] bf16, or int8 when q8
  float* scale = nullptr;    // [out] fp32 per-channel scales (q8 only)
  bool q8 = false;
  int out = 0, in = 0;
};

struct DevLayer {
  void* inputNorm = nullptr;  // [H] bf16
  void* postNorm = nullptr;   // [H] bf16
  DevLinear qkv;              // [Q + 2 KV, H]: rows of q_proj, then k_proj, then v_proj
  void* bqkv = nullptr;       // [Q + 2 KV] bf16 or nullptr
  DevLinear o;                // [H, Q]
  void* bo = nullptr;         // [H] or nullptr
  DevLinear gateUp;           // [2 I, H]: rows of gate_proj, then up_proj
  void* bGateUp = nullptr;    // [2 I] or nullptr
  DevLinear down;             // [H, I]
  void* bDown = nullptr;      // [H] or nullptr
};

/** One attached KV pool: [layers, 2 (K, V), blocks, kvHeads, blockSize, headDim] bf16. */
struct DevKv {
  DevBuf buf;
  int numBlocks = 0, blockSize = 0;
  int64_t plane = 0;  // elements of one layer's K (or V)
};

/** One (layer, module)'s adapter slot pool (sgmv.cuh layout). */
struct DevLoraPool {
  void* a = nullptr;           // [slots, maxRank, in] bf16
  void* bt = nullptr;          // [slots, maxRank, out] bf16 (lora_B transposed)
  int32_t* rank = nullptr;     // [slots] rank of each slot for this module (0 = not targeted)
  int in = 0, out = 0;
};

/** Where one (layer, module)'s LoRA terms of this step sit in the staging arena (word offsets). */
struct LoraPlan {
  int numTerms = 0, numSegs = 0, maxSegLen = 0;
  bool bgmv = false;  // decode-only step with at most one term per row
  size_t termRows = 0, termSlot = 0, termScale = 0, segStart = 0, segSlot = 0, rowPtr = 0, rowTerms = 0;
};

int moduleIn(const ModelConfig& c, int m) {  // loraModuleIn, inlined (no link to the core)
  const LoraModule mod = LoraModule(m);
  if (mod == LoraModule::O) return c.qDim();
  if (mod == LoraModule::Down) return c.intermediateSize;
  return c.hiddenSize;
}
int moduleOut(const ModelConfig& c, int m) {
  const LoraModule mod = LoraModule(m);
  if (mod == LoraModule::Q) return c.qDim();
  if (mod == LoraModule::K || mod == LoraModule::V) return c.kvDim();
  if (mod == LoraModule::Gate || mod == LoraModule::Up) return c.intermediateSize;
  return c.hiddenSize;
}

class CudaForward final : public ForwardBackend {
 public:
  explicit CudaForward(std::shared_ptr<const Model> model) : model_(std::move(model)) {
    ck(cudaSetDevice(device_), "cudaSetDevice(0)");
    ck(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate (compute)");
    ck(cudaStreamCreateWithFlags(&upStream_, cudaStreamNonBlocking), "cudaStreamCreate (adapter upload)");
    ck(cudaEventCreateWithFlags(&upEvent_, cudaEventDisableTiming), "cudaEventCreate (adapter upload)");
  }

  ~CudaForward() override {
    (void)cudaSetDevice(device_);
    if (stream_) (void)cudaStreamSynchronize(stream_);
    if (upStream_) (void)cudaStreamSynchronize(upStream_);
    for (void* p : allocs_) (void)cudaFree(p);
    if (upEvent_) (void)cudaEventDestroy(upEvent_);
    if (upStream_) (void)cudaStreamDestroy(upStream_);
    if (stream_) (void)cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }
  bool complete() const override { return true; }
  int64_t weightBytes() const override { return weightBytes_; }

  void uploadWeights() override {
    ck(cudaSetDevice(device_), "cudaSetDevice");
    if (uploaded_) return;
    const Model& m = *model_;
    const ModelConfig& c = m.config();
    const int64_t H = c.hiddenSize, I = c.intermediateSize, V = c.vocabSize;
    embed_ = uploadBf16({&m.embed()}, "embed_tokens");
    layers_.resize(size_t(c.numHiddenLayers));
    for (int l = 0; l < c.numHiddenLayers; l++) {
      const LayerWeights& w = m.layer(l);
      DevLayer& d = layers_[size_t(l)];
      d.inputNorm = uploadBf16({&w.inputNorm}, "input_layernorm");
      d.postNorm = uploadBf16({&w.postNorm}, "post_attention_layernorm");
      d.qkv = uploadLinear({&w.wq, &w.wk, &w.wv}, "q/k/v_proj");
      d.o = uploadLinear({&w.wo}, "o_proj");
      d.gateUp = uploadLinear({&w.wGate, &w.wUp}, "gate/up_proj");
      d.down = uploadLinear({&w.wDown}, "down_proj");
      if (!w.bq.empty()) d.bqkv = uploadBf16({&w.bq, &w.bk, &w.bv}, "q/k/v_proj bias");
      if (!w.bo.empty()) d.bo = uploadBf16({&w.bo}, "o_proj bias");
      if (!w.bGate.empty()) d.bGateUp = uploadBf16({&w.bGate, &w.bUp}, "gate/up_proj bias");
      if (!w.bDown.empty()) d.bDown = uploadBf16({&w.bDown}, "down_proj bias");
      weightBytes_ += 2 * (2 * H) + linBytes(d.qkv) + linBytes(d.o) + linBytes(d.gateUp) + linBytes(d.down);
      if (d.bqkv) weightBytes_ += 2 * int64_t(c.qDim() + 2 * c.kvDim());
      if (d.bo) weightBytes_ += 2 * H;
      if (d.bGateUp) weightBytes_ += 2 * 2 * I;
      if (d.bDown) weightBytes_ += 2 * H;
    }
    finalNorm_ = uploadBf16({&m.finalNorm()}, "model.norm");
    // lm_head: the embedding when tied.
    if (m.tiedHead()) {
      lmHead_ = embed_;
    } else {
      const std::vector<float> head = m.head().rowMajor();
      lmHead_ = uploadBf16({&head}, "lm_head");
    }
    weightBytes_ += 2 * H + 2 * V * H;
    const std::vector<float>& inv = m.ropeInvFreq();
    invFreq_ = static_cast<float*>(alloc(inv.size() * sizeof(float), "rope inv_freq"));
    ck(cudaMemcpy(invFreq_, inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice), "upload rope inv_freq");
    uploaded_ = true;
  }

  void attachKv(KvCache& pool) override {
    ck(cudaSetDevice(device_), "cudaSetDevice");
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
    ck(cudaSetDevice(device_), "cudaSetDevice");
    std::lock_guard<std::mutex> lock(upMu_);
    if (!lora_.empty()) {
      if (maxSlots <= loraSlots_ && maxRank <= loraRank_) return;
      throw std::runtime_error("CUDA forward: reserveAdapters(" + std::to_string(maxSlots) + ", " + std::to_string(maxRank) +
                               ") after the pools were sized for " + std::to_string(loraSlots_) + " slots of rank " +
                               std::to_string(loraRank_));
    }
    if (maxSlots < 1 || maxRank < 1 || maxRank > cuda::kLoraMaxRank) {
      invalidArgument("EngineOptions.maxLoraRank", "CUDA forward: reserveAdapters: need slots >= 1 and 1 <= rank <= " +
                               std::to_string(cuda::kLoraMaxRank) + ", got " + std::to_string(maxSlots) + ", " +
                               std::to_string(maxRank));
    }
    const ModelConfig& c = model_->config();
    lora_.resize(size_t(c.numHiddenLayers) * kNumLoraModules);
    for (int l = 0; l < c.numHiddenLayers; l++) {
      for (int m = 0; m < kNumLoraModules; m++) {
        DevLoraPool& p = lora_[size_t(l) * kNumLoraModules + size_t(m)];
        p.in = moduleIn(c, m);
        p.out = moduleOut(c, m);
        p.a = alloc(size_t(maxSlots) * maxRank * p.in * 2, "cudaMalloc (LoRA A pool)");
        p.bt = alloc(size_t(maxSlots) * maxRank * p.out * 2, "cudaMalloc (LoRA B pool)");
        p.rank = static_cast<int32_t*>(alloc(size_t(maxSlots) * sizeof(int32_t), "cudaMalloc (LoRA ranks)"));
        ck(cudaMemset(p.rank, 0, size_t(maxSlots) * sizeof(int32_t)), "cudaMemset (LoRA ranks)");
      }
    }
    loraSlots_ = maxSlots;
    loraRank_ = maxRank;
  }

  void uploadAdapter(int slot, const LoraAdapter& ad) override {
    ck(cudaSetDevice(device_), "cudaSetDevice");
    std::lock_guard<std::mutex> lock(upMu_);
    if (lora_.empty()) throw std::runtime_error("CUDA forward: uploadAdapter before reserveAdapters (the slot pools are not sized)");
    if (slot < 0 || slot >= loraSlots_) {
      throw std::runtime_error("CUDA forward: adapter slot " + std::to_string(slot) + " is out of range [0, " +
                               std::to_string(loraSlots_) + ")");
    }
    const ModelConfig& c = model_->config();
    if (ad.numLayers != c.numHiddenLayers) throw std::runtime_error("CUDA forward: adapter has " + std::to_string(ad.numLayers) + " layers, the model " + std::to_string(c.numHiddenLayers));
    // Bytes: every pair's A and B^T in bf16, plus one int32 rank per (layer, module).
    size_t bytes = lora_.size() * 48;  // int32 rank + alignment padding of each (layer, module)
    for (int l = 0; l < c.numHiddenLayers; l++) {
      for (int m = 0; m < kNumLoraModules; m++) {
        const LoraPair* p = ad.get(l, LoraModule(m));
        if (!p) continue;
        const DevLoraPool& d = lora_[size_t(l) * kNumLoraModules + size_t(m)];
        if (p->rank < 1 || p->rank > loraRank_) {
          throw std::runtime_error("CUDA forward: adapter rank " + std::to_string(p->rank) + " (layer " + std::to_string(l) + " " +
                                   hf::moduleName(LoraModule(m)) + ") is greater than the slots' max rank " + std::to_string(loraRank_));
        }
        if (p->a.size() != size_t(p->rank) * size_t(d.in) || p->bT.size() != size_t(p->rank) * size_t(d.out)) {
          throw std::runtime_error(std::string("CUDA forward: adapter pair of ") + hf::moduleName(LoraModule(m)) + " has the wrong size");
        }
        bytes += (p->a.size() + p->bT.size()) * 2;
      }
    }
    // The previous upload may still read the staging buffer.
    ck(cudaEventSynchronize(upEvent_), "cudaEventSynchronize (previous adapter upload)");
    char* host = static_cast<char*>(upStage_.ensure(bytes, "cudaHostAlloc (adapter staging)"));
    size_t off = 0;
    for (int l = 0; l < c.numHiddenLayers; l++) {
      for (int m = 0; m < kNumLoraModules; m++) {
        const LoraPair* p = ad.get(l, LoraModule(m));
        const DevLoraPool& d = lora_[size_t(l) * kNumLoraModules + size_t(m)];
        int32_t* rank = reinterpret_cast<int32_t*>(host + off);
        *rank = p ? p->rank : 0;
        ck(cudaMemcpyAsync(d.rank + slot, rank, sizeof(int32_t), cudaMemcpyHostToDevice, upStream_), "adapter upload (rank)");
        off += sizeof(int32_t);
        if (!p) continue;
        off = (off + 15) & ~size_t(15);
        for (int which = 0; which < 2; which++) {
          const LoraMatrix& src = which == 0 ? p->a : p->bT;
          uint16_t* h = reinterpret_cast<uint16_t*>(host + off);
          if (src.dtype() == DType::BF16) {
            std::memcpy(h, src.bits16().data(), src.size() * 2);  // already the device dtype
          } else {
            for (size_t i = 0; i < src.size(); i++) h[i] = floatToBf16(src.get(i));
          }
          // Slot s of a pool [slots, maxRank, n] starts at s * maxRank * n; its first rank rows.
          void* dst = which == 0 ? at(d.a, int64_t(slot) * loraRank_ * d.in) : at(d.bt, int64_t(slot) * loraRank_ * d.out);
          ck(cudaMemcpyAsync(dst, h, src.size() * 2, cudaMemcpyHostToDevice, upStream_), "adapter upload (A / B^T)");
          off += src.size() * 2;
          off = (off + 15) & ~size_t(15);
        }
      }
    }
    if (off > upStage_.cap) throw std::logic_error("CUDA forward: adapter staging overflow");
    ck(cudaEventRecord(upEvent_, upStream_), "cudaEventRecord (adapter upload)");
  }

  void waitAdapters() override {
    ck(cudaSetDevice(device_), "cudaSetDevice");
    std::lock_guard<std::mutex> lock(upMu_);
    ck(cudaEventSynchronize(upEvent_), "cudaEventSynchronize (adapter upload)");
  }

  void forward(const std::vector<BatchEntry>& batch, std::vector<float>* logits) override;

 private:
  void* alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    ck(cudaMalloc(&p, std::max<size_t>(bytes, 16)), what);
    allocs_.push_back(p);
    return p;
  }

  /** Concatenate float vectors, convert to bf16, upload. */
  void* uploadBf16(std::initializer_list<const std::vector<float>*> parts, const char* what) {
    size_t n = 0;
    for (const auto* v : parts) n += v->size();
    std::vector<uint16_t> h(n);
    size_t o = 0;
    for (const auto* v : parts) {
      for (float f : *v) h[o++] = floatToBf16(f);
    }
    void* d = alloc(n * 2, what);
    ck(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice), what);
    return d;
  }

  /** Stack linear layers along the output axis (same `in`); int8 when the model's are. */
  DevLinear uploadLinear(std::initializer_list<const Linear*> parts, const char* what) {
    DevLinear d;
    d.in = int((*parts.begin())->in);
    d.q8 = (*parts.begin())->quantized();
    for (const Linear* p : parts) {
      if (p->in != d.in || p->quantized() != d.q8) throw std::logic_error(std::string("CUDA forward: ") + what + ": parts differ");
      d.out += int(p->out);
    }
    if (!d.q8) {
      std::vector<uint16_t> h;
      for (const Linear* p : parts) {
        for (float f : p->rowMajor()) h.push_back(floatToBf16(f));
      }
      const size_t n = h.size();
      d.w = alloc(n * 2, what);
      ck(cudaMemcpy(d.w, h.data(), n * 2, cudaMemcpyHostToDevice), what);
      return d;
    }
    std::vector<int8_t> q;
    std::vector<float> s;
    for (const Linear* p : parts) {
      for (float v : p->rowMajor()) q.push_back(int8_t(v));  // quantized: the raw int8 values
      s.insert(s.end(), p->scale.begin(), p->scale.end());
    }
    d.w = alloc(q.size(), what);
    ck(cudaMemcpy(d.w, q.data(), q.size(), cudaMemcpyHostToDevice), what);
    d.scale = static_cast<float*>(alloc(s.size() * sizeof(float), what));
    ck(cudaMemcpy(d.scale, s.data(), s.size() * sizeof(float), cudaMemcpyHostToDevice), what);
    return d;
  }

  static int64_t linBytes(const DevLinear& d) {
    return int64_t(d.out) * d.in * (d.q8 ? 1 : 2) + (d.q8 ? int64_t(d.out) * 4 : 0);
  }

  /** y [m, lin.out] (row stride ld_y) = x [m, lin.in] (row stride ld_x) W^T, bf16. */
  void gemm(void* y, int64_t ldY, const void* x, int64_t ldX, const DevLinear& lin, int m, const char* what) {
    if (lin.q8) {
      lk(cuda::launch_gemm_w8(y, ldY, x, ldX, static_cast<const int8_t*>(lin.w), lin.scale, m, lin.out, lin.in, 1.0f, false,
                              kBf16, stream_),
         what);
    } else {
      lk(cuda::launch_gemm_best(y, ldY, kBf16, x, ldX, lin.w, lin.in, m, lin.out, lin.in, 1.0f, 0.0f, kBf16, stream_), what);
    }
  }

  /** y[rows of the step] += LoRA of (layer, module) on x (see LoraPlan). */
  void applyLora(int layer, int m, const void* x, int64_t ldX, void* y, int64_t ldY, int T);

  template <typename U>
  U* dev(size_t wordOff) {
    return reinterpret_cast<U*>(static_cast<uint32_t*>(stepDev_.p) + wordOff);
  }

  std::shared_ptr<const Model> model_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;    // compute
  cudaStream_t upStream_ = nullptr;  // adapter uploads (overlap compute)
  cudaEvent_t upEvent_ = nullptr;    // recorded after each upload; each step waits on it
  std::vector<void*> allocs_;        // weights and adapter pools, freed in the destructor
  bool uploaded_ = false;
  int64_t weightBytes_ = 0;

  void* embed_ = nullptr;      // [V, H] bf16
  std::vector<DevLayer> layers_;
  void* finalNorm_ = nullptr;  // [H] bf16
  void* lmHead_ = nullptr;     // [V, H] bf16 (== embed_ when tied)
  float* invFreq_ = nullptr;   // [headDim / 2] fp32

  std::unordered_map<const KvCache*, DevKv> kv_;

  std::mutex upMu_;                 // lora_ sizing, upStage_, upEvent_ records
  std::vector<DevLoraPool> lora_;   // [layers * 7]
  int loraSlots_ = 0, loraRank_ = 0;
  PinnedBuf upStage_;

  // Per-step buffers (engine thread), grown on demand.
  std::vector<uint32_t> stepHost_;  // staging arena being built (words)
  std::vector<LoraPlan> plans_;     // [layers * 7]
  PinnedBuf stepPinned_;
  DevBuf stepDev_;
  DevBuf x_, xn_, qkv_, attn_, proj_, gu_, sel_, logits_, loraTmp_, attnWs_;
};

// ---------------------------------------------------------------------------------------------
// The step.

void CudaForward::applyLora(int layer, int m, const void* x, int64_t ldX, void* y, int64_t ldY, int T) {
  const LoraPlan& p = plans_[size_t(layer) * kNumLoraModules + size_t(m)];
  if (p.numTerms == 0) return;
  const DevLoraPool& d = lora_[size_t(layer) * kNumLoraModules + size_t(m)];
  float* tmp = static_cast<float*>(loraTmp_.p);
  if (p.bgmv) {
    lk(cuda::launch_bgmv_shrink(tmp, x, ldX, d.a, d.rank, dev<int32_t>(p.termRows), dev<int32_t>(p.termSlot), p.numTerms, d.in,
                                loraRank_, kBf16, stream_),
       "bgmv shrink");
    lk(cuda::launch_bgmv_expand(y, ldY, tmp, d.bt, d.rank, dev<int32_t>(p.termRows), dev<int32_t>(p.termSlot),
                                dev<float>(p.termScale), p.numTerms, d.out, loraRank_, kBf16, stream_),
       "bgmv expand");
    return;
  }
  lk(cuda::launch_sgmv_shrink(tmp, x, ldX, d.a, d.rank, dev<int32_t>(p.termRows), dev<int32_t>(p.segStart),
                              dev<int32_t>(p.segSlot), p.numSegs, p.maxSegLen, p.numTerms, d.in, loraRank_, kBf16, stream_),
     "sgmv shrink");
  lk(cuda::launch_sgmv_expand(y, ldY, tmp, d.bt, d.rank, dev<int32_t>(p.rowPtr), dev<int32_t>(p.rowTerms),
                              dev<int32_t>(p.termSlot), dev<float>(p.termScale), T, d.out, loraRank_, kBf16, stream_),
     "sgmv expand");
}

void CudaForward::forward(const std::vector<BatchEntry>& batch, std::vector<float>* logits) {
  ck(cudaSetDevice(device_), "cudaSetDevice");
  if (!uploaded_) throw std::runtime_error("CUDA forward: forward before uploadWeights");
  const ModelConfig& c = model_->config();
  const int H = c.hiddenSize, I = c.intermediateSize, Q = c.qDim(), KV = c.kvDim(), V = c.vocabSize;
  const int QKV = Q + 2 * KV, L = c.numHiddenLayers, D = c.headDim;
  const int E = int(batch.size());
  if (E == 0) {
    logits->clear();
    return;
  }

  // --- Shapes and checks (as cpu::forward: every table covers its tokens; one pool).
  int T = 0, R = 0, maxBlocks = 1;
  const KvCache* pool = &batch[0].kv->cache();
  for (const BatchEntry& e : batch) {
    if (!e.kv || e.numTokens < 1 || !e.tokens) throw std::runtime_error("CUDA forward: a batch entry has no tokens or no KV");
    if (&e.kv->cache() != pool) throw std::runtime_error("CUDA forward: every entry of a step must use the same KV pool");
    const int ctx = e.startPos + e.numTokens;
    const int need = (ctx + e.kv->blockSize() - 1) / e.kv->blockSize();
    if (e.kv->numBlocks() < need) {
      throw std::runtime_error("CUDA forward: block table of " + std::to_string(e.kv->numBlocks()) + " blocks does not cover " +
                               std::to_string(ctx) + " positions");
    }
    for (int i = 0; i < e.numTokens; i++) {
      if (e.tokens[i] < 0 || e.tokens[i] >= V) throw std::runtime_error("CUDA forward: token id " + std::to_string(e.tokens[i]) + " out of vocab");
    }
    maxBlocks = std::max(maxBlocks, need);
    T += e.numTokens;
    R += e.allLogits ? e.numTokens : 1;
  }
  auto kvIt = kv_.find(pool);
  if (kvIt == kv_.end()) throw std::runtime_error("CUDA forward: the batch's KV pool was not attached (attachKv)");
  DevKv& kv = kvIt->second;
  const int bs = kv.blockSize;
  // Attention split: leading single-token entries -> decode kernel; the rest -> prefill kernel
  // (it also handles single-token entries that come after a multi-token one).
  int nDecode = 0;
  while (nDecode < E && batch[size_t(nDecode)].numTokens == 1) nDecode++;
  int maxCtxDecode = 1, maxQLen = 1;
  for (int s = 0; s < E; s++) {
    const BatchEntry& e = batch[size_t(s)];
    if (s < nDecode) maxCtxDecode = std::max(maxCtxDecode, e.startPos + 1);
    else maxQLen = std::max(maxQLen, e.numTokens);
  }

  // --- Staging arena (4-byte words; int64 slot mapping at an even word).
  std::vector<uint32_t>& h = stepHost_;
  h.clear();
  auto reserveWords = [&](size_t n, bool align8) {
    if (align8 && (h.size() & 1)) h.push_back(0);
    const size_t off = h.size();
    h.resize(off + n, 0);
    return off;
  };
  const size_t oSlots = reserveWords(size_t(T) * 2, true);
  const size_t oIds = reserveWords(size_t(T), false);
  const size_t oPos = reserveWords(size_t(T), false);
  const size_t oBt = reserveWords(size_t(E) * maxBlocks, false);
  const size_t oCtx = reserveWords(size_t(E), false);
  const size_t oCuq = reserveWords(size_t(E - nDecode) + 1, false);
  const size_t oGather = reserveWords(size_t(R), false);
  {
    int64_t* slots = reinterpret_cast<int64_t*>(h.data() + oSlots);
    int32_t* ids = reinterpret_cast<int32_t*>(h.data() + oIds);
    int32_t* pos = reinterpret_cast<int32_t*>(h.data() + oPos);
    int32_t* bt = reinterpret_cast<int32_t*>(h.data() + oBt);
    int32_t* ctx = reinterpret_cast<int32_t*>(h.data() + oCtx);
    int32_t* cuq = reinterpret_cast<int32_t*>(h.data() + oCuq);
    int32_t* gather = reinterpret_cast<int32_t*>(h.data() + oGather);
    int row = 0, out = 0;
    for (int s = 0; s < E; s++) {
      const BatchEntry& e = batch[size_t(s)];
      const int32_t* table = e.kv->blockTable();
      const int ctxLen = e.startPos + e.numTokens;
      const int need = (ctxLen + bs - 1) / bs;
      for (int b = 0; b < need; b++) {
        if (table[b] < 0 || table[b] >= kv.numBlocks) throw std::runtime_error("CUDA forward: block id " + std::to_string(table[b]) + " outside the attached pool");
        bt[size_t(s) * maxBlocks + b] = table[b];
      }
      ctx[s] = ctxLen;
      if (s >= nDecode) cuq[s - nDecode + 1] = cuq[s - nDecode] + e.numTokens;
      for (int i = 0; i < e.numTokens; i++) {
        const int p = e.startPos + i;
        ids[row + i] = e.tokens[i];
        pos[row + i] = p;
        slots[row + i] = int64_t(table[p / bs]) * bs + p % bs;
      }
      const int first = e.allLogits ? 0 : e.numTokens - 1;
      for (int i = first; i < e.numTokens; i++) gather[out++] = row + i;
      row += e.numTokens;
    }
  }

  // --- LoRA term arrays of every (layer, module).
  plans_.assign(size_t(L) * kNumLoraModules, LoraPlan());
  int maxTerms = 0;
  const bool decodeOnly = (T == E);
  struct Term {
    int row, slot;
    float scale;
  };
  std::vector<Term> terms;
  std::vector<int32_t> rowCount;
  bool anyLora = false;
  for (const BatchEntry& e : batch) anyLora = anyLora || (e.loras && !e.loras->empty());
  for (int l = 0; anyLora && l < L; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      terms.clear();
      int row = 0;
      for (const BatchEntry& e : batch) {
        if (e.loras) {
          for (const ActiveLora& al : *e.loras) {
            const LoraPair* p = al.adapter ? al.adapter->get(l, LoraModule(m)) : nullptr;
            if (!p) continue;
            if (al.slot < 0 || al.slot >= loraSlots_) {
              throw std::runtime_error("CUDA forward: adapter slot " + std::to_string(al.slot) + " has no device pool (reserveAdapters(" +
                                       std::to_string(loraSlots_) + ", ...))");
            }
            // PEFT: y += B(A(x)) * scaling, times the adapter's weight in the set (cpu/forward.cc applyLora).
            for (int i = 0; i < e.numTokens; i++) terms.push_back(Term{row + i, al.slot, al.weight * p->scaling});
          }
        }
        row += e.numTokens;
      }
      if (terms.empty()) continue;
      std::stable_sort(terms.begin(), terms.end(), [](const Term& a, const Term& b) { return a.slot < b.slot; });
      LoraPlan& p = plans_[size_t(l) * kNumLoraModules + size_t(m)];
      const int n = int(terms.size());
      p.numTerms = n;
      maxTerms = std::max(maxTerms, n);
      p.termRows = reserveWords(size_t(n), false);
      p.termSlot = reserveWords(size_t(n), false);
      p.termScale = reserveWords(size_t(n), false);
      for (int t = 0; t < n; t++) {
        h[p.termRows + t] = uint32_t(terms[size_t(t)].row);
        h[p.termSlot + t] = uint32_t(terms[size_t(t)].slot);
        std::memcpy(&h[p.termScale + t], &terms[size_t(t)].scale, 4);
      }
      // Segments: runs of one slot (terms are sorted by slot).
      std::vector<int32_t> segStart, segSlot;
      for (int t = 0; t < n; t++) {
        if (t == 0 || terms[size_t(t)].slot != terms[size_t(t - 1)].slot) {
          segStart.push_back(t);
          segSlot.push_back(terms[size_t(t)].slot);
        }
      }
      segStart.push_back(n);
      p.numSegs = int(segSlot.size());
      for (int g = 0; g < p.numSegs; g++) p.maxSegLen = std::max(p.maxSegLen, segStart[size_t(g + 1)] - segStart[size_t(g)]);
      p.segStart = reserveWords(segStart.size(), false);
      p.segSlot = reserveWords(segSlot.size(), false);
      std::memcpy(&h[p.segStart], segStart.data(), segStart.size() * 4);
      std::memcpy(&h[p.segSlot], segSlot.data(), segSlot.size() * 4);
      // CSR by row over term ids (term order = tmp row order).
      rowCount.assign(size_t(T) + 1, 0);
      for (const Term& t : terms) rowCount[size_t(t.row) + 1]++;
      bool oneEach = true;
      for (int r = 0; r < T; r++) oneEach = oneEach && rowCount[size_t(r) + 1] <= 1;
      for (int r = 0; r < T; r++) rowCount[size_t(r) + 1] += rowCount[size_t(r)];
      p.rowPtr = reserveWords(size_t(T) + 1, false);
      std::memcpy(&h[p.rowPtr], rowCount.data(), (size_t(T) + 1) * 4);
      p.rowTerms = reserveWords(size_t(n), false);
      std::vector<int32_t> fill(rowCount.begin(), rowCount.end() - 1);
      for (int t = 0; t < n; t++) h[p.rowTerms + size_t(fill[size_t(terms[size_t(t)].row)]++)] = uint32_t(t);
      p.bgmv = decodeOnly && oneEach;
    }
  }

  // --- Buffers.
  const size_t stageBytes = h.size() * 4;
  void* pinned = stepPinned_.ensure(stageBytes, "cudaHostAlloc (step staging)");
  stepDev_.ensure(stageBytes, "cudaMalloc (step staging)");
  std::memcpy(pinned, h.data(), stageBytes);
  void* x = x_.ensure(size_t(T) * H * 2, "cudaMalloc (x)");
  void* xn = xn_.ensure(size_t(T) * H * 2, "cudaMalloc (xn)");
  void* qkv = qkv_.ensure(size_t(T) * QKV * 2, "cudaMalloc (qkv)");
  void* attn = attn_.ensure(size_t(T) * Q * 2, "cudaMalloc (attn)");
  void* proj = proj_.ensure(size_t(T) * H * 2, "cudaMalloc (proj)");
  void* gu = gu_.ensure(size_t(T) * 2 * I * 2, "cudaMalloc (gate_up)");
  void* sel = sel_.ensure(size_t(R) * H * 2, "cudaMalloc (sel)");
  float* lg = static_cast<float*>(logits_.ensure(size_t(R) * V * sizeof(float), "cudaMalloc (logits)"));
  if (maxTerms > 0) loraTmp_.ensure(size_t(maxTerms) * loraRank_ * sizeof(float), "cudaMalloc (LoRA tmp)");
  size_t wsBytes = 0;
  if (nDecode > 0) {
    wsBytes = cuda::paged_attention_decode_workspace_bytes(nDecode, c.numAttentionHeads, D, maxCtxDecode);
    if (wsBytes > 0) attnWs_.ensure(wsBytes, "cudaMalloc (attention workspace)");
  }

  // --- Wait for adapter uploads, then stage this step's inputs.
  {
    std::lock_guard<std::mutex> lock(upMu_);
    ck(cudaStreamWaitEvent(stream_, upEvent_, 0), "cudaStreamWaitEvent (adapter upload)");
  }
  ck(cudaMemcpyAsync(stepDev_.p, pinned, stageBytes, cudaMemcpyHostToDevice, stream_), "upload step inputs");
  const int32_t* dIds = dev<int32_t>(oIds);
  const int32_t* dPos = dev<int32_t>(oPos);
  const int64_t* dSlots = dev<int64_t>(oSlots);
  const int32_t* dBt = dev<int32_t>(oBt);
  const int32_t* dCtx = dev<int32_t>(oCtx);
  const int32_t* dCuq = dev<int32_t>(oCuq);
  const int32_t* dGather = dev<int32_t>(oGather);
  const float eps = float(c.rmsNormEps);
  const float scale = 1.0f / std::sqrt(float(D));

  lk(cuda::launch_embedding(dIds, embed_, x, H, T, H, V, kBf16, stream_), "embedding");
  for (int l = 0; l < L; l++) {
    const DevLayer& w = layers_[size_t(l)];
    // --- self-attention block: h = h + o_proj(attn(input_layernorm(h)))
    if (l == 0) {
      lk(cuda::launch_rms_norm(x, H, w.inputNorm, xn, H, T, H, eps, kBf16, stream_), "rms_norm (input)");
    } else {  // x += proj (the previous layer's MLP output), xn = input_layernorm(x)
      lk(cuda::launch_fused_add_rms_norm(proj, H, x, w.inputNorm, xn, H, T, H, eps, kBf16, stream_), "fused_add_rms_norm (input)");
    }
    gemm(qkv, QKV, xn, H, w.qkv, T, "q/k/v_proj");
    addBias(qkv, QKV, w.bqkv, T, QKV, stream_);
    applyLora(l, int(LoraModule::Q), xn, H, qkv, QKV, T);
    applyLora(l, int(LoraModule::K), xn, H, at(qkv, Q), QKV, T);
    applyLora(l, int(LoraModule::V), xn, H, at(qkv, Q + KV), QKV, T);
    lk(cuda::launch_rope(qkv, QKV, at(qkv, Q), QKV, dPos, invFreq_, T, c.numAttentionHeads, c.numKeyValueHeads, D, kBf16, stream_),
       "rope");
    void* kCache = at(kv.buf.p, (int64_t(l) * 2) * kv.plane);
    void* vCache = at(kv.buf.p, (int64_t(l) * 2 + 1) * kv.plane);
    lk(cuda::launch_reshape_and_cache(at(qkv, Q), QKV, at(qkv, Q + KV), QKV, kCache, vCache, dSlots, T, c.numKeyValueHeads, D, bs,
                                      kBf16, stream_),
       "reshape_and_cache");
    if (nDecode > 0) {  // rows [0, nDecode): one per entry
      lk(cuda::launch_paged_attention_decode(attn, Q, qkv, QKV, kCache, vCache, dBt, maxBlocks, dCtx, maxCtxDecode, nDecode,
                                             c.numAttentionHeads, c.numKeyValueHeads, D, bs, scale,
                                             static_cast<float*>(attnWs_.p), wsBytes, kBf16, stream_),
         "paged_attention_decode");
    }
    if (nDecode < E) {  // rows [nDecode, T): entries nDecode.. (cu_seqlens relative to row nDecode)
      lk(cuda::launch_prefill_attention(at(attn, int64_t(nDecode) * Q), Q, at(qkv, int64_t(nDecode) * QKV), QKV, kCache, vCache,
                                        dBt + size_t(nDecode) * maxBlocks, maxBlocks, dCuq, dCtx + nDecode, E - nDecode, maxQLen,
                                        c.numAttentionHeads, c.numKeyValueHeads, D, bs, scale, kBf16, stream_),
         "prefill_attention");
    }
    gemm(proj, H, attn, Q, w.o, T, "o_proj");
    addBias(proj, H, w.bo, T, H, stream_);
    applyLora(l, int(LoraModule::O), attn, Q, proj, H, T);
    // --- MLP block: h = h + down_proj(silu(gate_proj(x)) * up_proj(x)), x = post_attention_layernorm(h)
    lk(cuda::launch_fused_add_rms_norm(proj, H, x, w.postNorm, xn, H, T, H, eps, kBf16, stream_), "fused_add_rms_norm (post)");
    gemm(gu, 2 * I, xn, H, w.gateUp, T, "gate/up_proj");
    addBias(gu, 2 * I, w.bGateUp, T, 2 * I, stream_);
    applyLora(l, int(LoraModule::Gate), xn, H, gu, 2 * I, T);
    applyLora(l, int(LoraModule::Up), xn, H, at(gu, I), 2 * I, T);
    lk(cuda::launch_silu_mul(gu, 2 * I, at(gu, I), 2 * I, gu, 2 * I, T, I, kBf16, stream_), "silu_mul");
    gemm(proj, H, gu, 2 * I, w.down, T, "down_proj");
    addBias(proj, H, w.bDown, T, H, stream_);
    applyLora(l, int(LoraModule::Down), gu, 2 * I, proj, H, T);
  }
  // x += proj (last MLP), xn = norm(x); then only the rows that need logits (an embedding
  // gather over xn's rows) go through lm_head, fp32 out.
  lk(cuda::launch_fused_add_rms_norm(proj, H, x, finalNorm_, xn, H, T, H, eps, kBf16, stream_), "fused_add_rms_norm (final)");
  lk(cuda::launch_embedding(dGather, xn, sel, H, R, H, T, kBf16, stream_), "gather logit rows");
  lk(cuda::launch_gemm_best(lg, V, DType::F32, sel, H, lmHead_, H, R, V, H, 1.0f, 0.0f, kBf16, stream_), "lm_head");
  logits->resize(size_t(R) * size_t(V));
  ck(cudaMemcpyAsync(logits->data(), lg, size_t(R) * V * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download logits");
  ck(cudaStreamSynchronize(stream_), "forward step");
  for (const BatchEntry& e : batch) e.kv->setLength(e.startPos + e.numTokens);
}

}  // namespace

std::unique_ptr<ForwardBackend> makeCudaForward(std::shared_ptr<const Model> model) {
  return std::make_unique<CudaForward>(std::move(model));
}

}  // namespace openlora
