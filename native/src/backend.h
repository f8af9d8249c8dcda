// Backend selection (which compute backend an engine uses, and why) and the forward-backend
// seam: the interface every compute backend implements (CpuForward here, CudaForward in
// native/cuda/forward.cu).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "batch.h"
#include "config.h"

namespace openlora {

class Model;
class KvCache;
struct LoraAdapter;

/** What the CUDA runtime answers now (cudaInfo() of native/types.ts). */
struct CudaInfo {
  bool compiled = false;  // built with OPENLORA_WITH_CUDA (nvcc was found at build time)
  int deviceCount = 0;
  std::string error;      // "" or e.g. "cudaErrorInsufficientDriver: ... (code 35)"
};

/** Probe the CUDA runtime (cheap after the first call; never throws). */
CudaInfo probeCuda();

/**
 * Whether "auto" may pick the CUDA forward. CudaForward runs every op of the CPU forward on the
 * device but has not been verified on a GPU yet, so this is true only when the environment
 * variable OPENLORA_CUDA_FORWARD=1 is set (the GPU session's switch; no rebuild needed).
 * backend "cuda" uses CudaForward whenever a device answers, whatever this says.
 */
bool cudaForwardComplete();

/**
 * What the CUDA forward lacks for this model ("" when it runs it). Every family feature of
 * config.h is implemented there (q/k norms, Gemma norms and embedding scale, GeGLU, soft-capping,
 * query_pre_attn_scalar, sliding windows, per-layer RoPE bases, yarn / dynamic / longrope,
 * partial rotary, Phi-3's fused projections); what remains are shapes the kernels are not
 * instantiated for: head_dim outside {32, 64, 96, 128, 256}. makeForwardBackend then picks the
 * CPU ("auto") or refuses ("cuda").
 */
std::string cudaForwardGaps(const ModelConfig& c);

/** A resolved backend choice. */
struct BackendChoice {
  std::string backend;  // "cpu" | "cuda"
  std::string reason;   // human-readable, for ModelInfo.backendReason
};

/**
 * Resolve EngineOptions.backend ("auto" | "cpu" | "cuda"). "auto" picks cuda only when a device
 * answers AND cudaForwardComplete(); the reason says which of the two failed. "cuda" needs a
 * CUDA build and a device that answers.
 * @throws Error (errors.h) for "cuda" while it is not available (the message says what the
 *   probe found) and for unknown names.
 */
BackendChoice chooseBackend(const std::string& requested);

/**
 * One compute backend's forward pass over a loaded Model: the seam between the engine's
 * scheduling (host) and the math (CPU threads or a CUDA device).
 *
 * Lifecycle: construct over a Model → uploadWeights() once → attachKv(pool) for each KV pool →
 * uploadAdapter(slot, ...) as adapters load (asynchronous: waitAdapters() before a step uses
 * the slot) → forward(batch) per step. One thread (the engine thread) calls everything but
 * uploadAdapter, which the loader may call from its own thread.
 *
 * NOTE(why): the KV pool's block tables and BlockAllocator stay host-side (KvCache); a device
 * backend keeps its own storage for the same block ids, so the scheduler, prefix cache and
 * preemption are shared by every backend unchanged.
 */
class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  /** "cpu" | "cuda". */
  virtual const char* name() const = 0;
  /** Every op of the forward runs here (false while a backend is under construction). */
  virtual bool complete() const = 0;
  /** Copy the model's weights to backend memory (CPU: nothing to do, it reads the Model's). */
  virtual void uploadWeights() = 0;
  /** Bytes of base weights one decode step streams (the roofline's numerator). */
  virtual int64_t weightBytes() const = 0;
  /**
   * Bytes still free for a KV pool, or -1 when unknown (the automatic KV budget takes
   * EngineOptions.kvCacheMemoryFraction of it). Default: the host's MemAvailable
   * (/proc/meminfo: free memory plus reclaimable page cache); CUDA: the device's free memory.
   */
  virtual int64_t memoryAvailableBytes() const;
  /**
   * Back `pool`'s block ids with backend storage ([layers, K/V, blocks, kvHeads, blockSize,
   * headDim]; CPU: the pool's own host storage). Call before a forward uses the pool.
   */
  virtual void attachKv(KvCache& pool) = 0;
  /** Drop the backend storage of a pool that is going away (CPU: nothing to do). */
  virtual void detachKv(KvCache& pool) {}
  /**
   * Size the adapter slot pools: slots [0, maxSlots) of rank <= maxRank. Call once, before the
   * first uploadAdapter (CUDA: allocates [maxSlots, maxRank, in|out] per layer and module).
   */
  virtual void reserveAdapters(int maxSlots, int maxRank) {}
  /**
   * Put an adapter's A/B into adapter slot `slot` (CUDA: copy from pinned host memory on the
   * upload stream, overlapping compute). CPU: a no-op, BatchEntry::loras point at host memory.
   */
  virtual void uploadAdapter(int slot, const LoraAdapter& adapter) = 0;
  /** Wait for every queued uploadAdapter to land. */
  virtual void waitAdapters() = 0;
  /**
   * One batched step, cpu::forward's contract (cpu/forward.h): appends every entry's keys/values to its
   * cache, advances kv->length(), and writes logits [R, vocab] (R = rows that need logits).
   */
  virtual void forward(const std::vector<BatchEntry>& batch, std::vector<float>* logits) = 0;
};

/**
 * The CPU backend: cpu::forward (native/cpu/forward.h) on a ThreadPool of `threads` threads
 * (defined in cpu/forward.cc). bf16Activations: EngineOptions.activationDtype "bfloat16"
 * (cpu::Workspace::bf16Activations).
 */
std::unique_ptr<ForwardBackend> makeCpuForward(std::shared_ptr<const Model> model, int threads, int threadNice = 0,
                                               bool bf16Activations = false);

/**
 * "cpu" | "cuda" | "auto" (chooseBackend's rule). @throws Error (errors.h) when the backend
 * is not available in this build / on this machine (the message says why).
 */
std::unique_ptr<ForwardBackend> makeForwardBackend(const std::string& requested, std::shared_ptr<const Model> model,
                                                   int threads, std::string* reason = nullptr, int threadNice = 0,
                                                   bool bf16Activations = false);

}  // namespace openlora
