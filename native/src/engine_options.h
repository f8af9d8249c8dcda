// The engine's options, their defaults and their bounds: the one C++ home of every engine knob.
// The addon exports this table as `engineDefaults()` (addon.cc), so config/schema.ts can
// be tied to it by a test; readEngineOptions (napi_convert.cc) and Engine::Engine check the
// bounds here and name the field when a value falls outside them.
//
// NOTE(why) on the values, where the layers used to disagree (issue 12):
//  - maxLoras 16: vLLM's --max-loras is 1, a single-LoRA default that would make every
//    request with another adapter wait; a multi-LoRA server keeps a batch's worth of adapters
//    resident (16 is also what the engine had; the gateway had 8).
//  - maxLoraRank 64, at most 512: vLLM's --max-lora-rank choices end at 512; the CUDA
//    backend's kernels stop at 256 (kLoraMaxRank) and say so when asked for more.
//  - threadNice 5: the engine always shares its process with a JS event loop; 5 was the
//    gateway's measured default (the engine had 0), so direct users now get it too.
//  - maxNumSeqs 64, at most 4096; maxLoras at most 4096 (the gateway's bounds).
#pragma once

#include <cstdint>

#include "dtype.h"
#include "quant.h"

namespace openlora {

/** An integer option's default and inclusive bounds. */
struct IntOption {
  const char* name;  // EngineOptions field name (native/types.ts)
  int64_t def;       // value when absent (0 = automatic for kvCacheBytes / numKvBlocks)
  int64_t min;
  int64_t max;
};

/** A fractional option's default and inclusive bounds. */
struct RealOption {
  const char* name;  // EngineOptions field name (native/types.ts)
  double def;
  double min;
  double max;
};

namespace engine_defaults {
// threads: default std::thread::hardware_concurrency() (resolved at load), bounds below.
inline constexpr IntOption kThreads{"threads", 0, 1, 1024};
inline constexpr IntOption kThreadNice{"threadNice", 5, 0, 19};
inline constexpr IntOption kMaxLoras{"maxLoras", 16, 1, 4096};
inline constexpr IntOption kMaxLoraRank{"maxLoraRank", 64, 1, 512};
inline constexpr IntOption kMaxNumSeqs{"maxNumSeqs", 64, 1, 4096};
inline constexpr IntOption kMaxNumBatchedTokens{"maxNumBatchedTokens", 512, 1, int64_t(1) << 20};
inline constexpr IntOption kBlockSize{"blockSize", 16, 1, 1024};
inline constexpr IntOption kKvCacheBytes{"kvCacheBytes", 0, 0, int64_t(9e15)};
inline constexpr IntOption kNumKvBlocks{"numKvBlocks", 0, 0, int64_t(1) << 30};
/** vLLM's max_model_len: 0 = the model's (config.json), else at most that. */
inline constexpr IntOption kMaxModelLen{"maxModelLen", 0, 0, int64_t(1) << 30};
/** Every integer option, in the order engineDefaults() lists them. */
inline constexpr IntOption kIntOptions[] = {kThreads,  kThreadNice,          kMaxLoras,     kMaxLoraRank,  kMaxNumSeqs,
                                            kMaxNumBatchedTokens, kBlockSize, kKvCacheBytes, kNumKvBlocks, kMaxModelLen};
/**
 * The automatic KV budget (kvCacheBytes 0, numKvBlocks 0): this fraction of the memory the
 * backend has available after the weights are loaded (ForwardBackend::memoryAvailableBytes:
 * Linux MemAvailable on the CPU, free device memory on CUDA), like vLLM's
 * gpu_memory_utilization; at most maxNumSeqs full-length sequences, at least one.
 */
inline constexpr RealOption kKvCacheMemoryFraction{"kvCacheMemoryFraction", 0.5, 0.01, 0.95};
/** The automatic KV budget where the available memory is unknown (no /proc/meminfo). */
inline constexpr int64_t kAutoKvCacheCapBytes = int64_t(256) << 20;
inline constexpr bool kEnablePrefixCaching = true;
// Per-sequence bounds (SequenceParams).
inline constexpr int kMaxLogprobs = 20;         // top-k logprobs per token (OpenAI's limit)
inline constexpr int kMinEnsembleMembers = 2;
inline constexpr int kMaxEnsembleMembers = 16;
inline constexpr int kDefaultMaxTokens = 16;    // SequenceParams.maxTokens when absent (OpenAI completions' default)
// The CUDA LoRA kernels' largest rank (cuda/sgmv.cuh kLoraMaxRank, which static_asserts equality):
// the CUDA backend refuses maxLoraRank above it, naming the field.
inline constexpr int kCudaMaxLoraRank = 256;
}  // namespace engine_defaults

/** Engine sizing (EngineOptions of native/types.ts, resolved). Defaults from engine_defaults. */
struct EngineOptions {
  int threads = 1;  // compute threads (including the engine thread)
  int maxLoras = int(engine_defaults::kMaxLoras.def);        // adapter slots
  int maxLoraRank = int(engine_defaults::kMaxLoraRank.def);  // largest rank a slot may hold
  int maxNumSeqs = int(engine_defaults::kMaxNumSeqs.def);    // batch entries (ensemble members count one each) running at once
  // Tokens computed per step: decodes first, then prefill chunks (>= maxNumSeqs).
  int maxNumBatchedTokens = int(engine_defaults::kMaxNumBatchedTokens.def);
  int blockSize = int(engine_defaults::kBlockSize.def);  // tokens per KV block
  int64_t kvCacheBytes = 0;  // KV pool budget; 0 = auto (see Engine::Engine); resolved there
  double kvCacheMemoryFraction = engine_defaults::kKvCacheMemoryFraction.def;  // the auto budget's share of available memory
  int numKvBlocks = 0;       // KV pool size in blocks; 0 = from kvCacheBytes; resolved there
  int maxModelLen = 0;       // context served: 0 = the model's; resolved at load (at most what the KV pool holds)
  // Share full KV blocks between sequences with the same adapters and prefix.
  bool enablePrefixCaching = engine_defaults::kEnablePrefixCaching;
  Quantization quantization = Quantization::None;  // base linear-layer storage (quant.h); applied by Model::load
  // Nice increment of the engine thread and its compute workers (Linux; 0 keeps the caller's).
  int threadNice = int(engine_defaults::kThreadNice.def);
  // KV pool element type (vLLM --kv-cache-dtype): F32, or BF16 (half the bytes per block; K/V
  // rounded to nearest even on write, widened exactly by attention). The CUDA backend keeps its
  // device KV in bf16 whatever this says; the value there only sizes the pool.
  DType kvCacheDtype = DType::F32;
  // Input precision of the CPU products with BF16 weights (vLLM --dtype for a BF16 checkpoint):
  // F32 (default: activations stay float32, logits within 1e-3 of float32 references), or BF16
  // (rounded to bfloat16 before each such product, as llama.cpp and PyTorch bf16 inference do: AMX-
  // BF16 tiles or AVX-512 BF16 vdpbf16ps where the CPU has them, 2x or more the fp32 FMA rate for
  // prefill and batched decode; logits move by ~2e-2). cpu::gemmPacked; the CUDA forward ignores it.
  DType activationDtype = DType::F32;
};

/**
 * Check every bounded field of `o` against engine_defaults (and maxNumBatchedTokens >=
 * maxNumSeqs). @throws Error(invalid_argument) naming "EngineOptions.<field>" and the range.
 */
void checkEngineOptions(const EngineOptions& o);

}  // namespace openlora
