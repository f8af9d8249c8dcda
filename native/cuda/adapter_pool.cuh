// The adapter slot pools on the device (adapter_pool.cu): per (layer, module) one pool of
// [slots, maxRank, in] A and [slots, maxRank, out] B^T (bf16) plus each slot's rank, the layout
// sgmv.cuh / bgmv.cuh read. Uploads run on their own stream from a pinned staging buffer and
// overlap compute; the compute stream waits on the last upload's event before a step.
// Plain host C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "../src/config.h"
#include "../src/lora.h"
#include "device_memory.cuh"

namespace openlora::cuda {

/** One (layer, module)'s adapter slot pool (sgmv.cuh layout). */
struct DevLoraPool {
  void* a = nullptr;        // [slots, maxRank, in] bf16
  void* bt = nullptr;       // [slots, maxRank, out] bf16 (lora_B transposed)
  int32_t* rank = nullptr;  // [slots] rank of each slot for this module (0 = not targeted)
  int in = 0, out = 0;
};

/**
 * Every (layer, module)'s slot pool of one device. reserve() once, then upload() from any thread
 * (serialised by the pool's mutex), streamWait() on the engine thread before each step.
 */
class AdapterPool {
 public:
  AdapterPool();
  AdapterPool(const AdapterPool&) = delete;
  AdapterPool& operator=(const AdapterPool&) = delete;
  ~AdapterPool();

  /**
   * Allocate [maxSlots, maxRank] pools for every layer and module of `c` (a second call with no
   * larger sizes is a no-op).
   * @throws Error invalid_argument (EngineOptions.maxLoraRank) for slots < 1 or a rank outside
   *   [1, kLoraMaxRank]; std::runtime_error for a larger second reservation; out_of_memory.
   */
  void reserve(const ModelConfig& c, int maxSlots, int maxRank);
  /**
   * Copy an adapter's A / B^T (converted to bf16) and ranks into slot `slot`, asynchronously on
   * the upload stream. @throws std::runtime_error for a slot out of range, a rank above the
   * pools' or a pair of the wrong size; device errors as check().
   */
  void upload(const ModelConfig& c, int slot, const LoraAdapter& ad);
  /** Block until every queued upload has landed. */
  void wait();
  /** Make `stream` wait for every queued upload (no host block). */
  void streamWait(cudaStream_t stream);

  bool empty() const { return pools_.empty(); }
  int slots() const { return slots_; }
  int maxRank() const { return rank_; }
  /** The pool of (layer, module). */
  const DevLoraPool& pool(int layer, int module) const { return pools_[size_t(layer) * kNumLoraModules + size_t(module)]; }

 private:
  void* alloc(size_t bytes, const char* what);

  cudaStream_t stream_ = nullptr;  // adapter uploads (overlap compute)
  cudaEvent_t event_ = nullptr;    // recorded after each upload; each step waits on it
  std::mutex mu_;                  // pools_ sizing, staging_, event_ records
  std::vector<DevLoraPool> pools_; // [layers * 7]
  std::vector<void*> allocs_;
  int slots_ = 0, rank_ = 0;
  PinnedBuf staging_;
};

}  // namespace openlora::cuda
