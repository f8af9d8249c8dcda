// See adapter_pool.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "../src/errors.h"
#include "adapter_pool.cuh"
#include "sgmv.cuh"

namespace openlora::cuda {

AdapterPool::AdapterPool() {
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate (adapter upload)");
  check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate (adapter upload)");
}

AdapterPool::~AdapterPool() {
  if (stream_) (void)cudaStreamSynchronize(stream_);
  for (void* p : allocs_) (void)cudaFree(p);
  if (event_) (void)cudaEventDestroy(event_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void* AdapterPool::alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(bytes, 16)), what);
  allocs_.push_back(p);
  return p;
}

void AdapterPool::reserve(const ModelConfig& c, int maxSlots, int maxRank) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pools_.empty()) {
    if (maxSlots <= slots_ && maxRank <= rank_) return;
    throw std::runtime_error("CUDA forward: reserveAdapters(" + std::to_string(maxSlots) + ", " + std::to_string(maxRank) +
                             ") after the pools were sized for " + std::to_string(slots_) + " slots of rank " +
                             std::to_string(rank_));
  }
  if (maxSlots < 1 || maxRank < 1 || maxRank > kLoraMaxRank) {
    invalidArgument("EngineOptions.maxLoraRank", "CUDA forward: reserveAdapters: need slots >= 1 and 1 <= rank <= " +
                                                     std::to_string(kLoraMaxRank) + ", got " + std::to_string(maxSlots) + ", " +
                                                     std::to_string(maxRank));
  }
  pools_.resize(size_t(c.numHiddenLayers) * kNumLoraModules);
  for (int l = 0; l < c.numHiddenLayers; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      DevLoraPool& p = pools_[size_t(l) * kNumLoraModules + size_t(m)];
      p.in = int(loraModuleIn(c, LoraModule(m)));
      p.out = int(loraModuleOut(c, LoraModule(m)));
      p.a = alloc(size_t(maxSlots) * maxRank * p.in * 2, "cudaMalloc (LoRA A pool)");
      p.bt = alloc(size_t(maxSlots) * maxRank * p.out * 2, "cudaMalloc (LoRA B pool)");
      p.rank = static_cast<int32_t*>(alloc(size_t(maxSlots) * sizeof(int32_t), "cudaMalloc (LoRA ranks)"));
      check(cudaMemset(p.rank, 0, size_t(maxSlots) * sizeof(int32_t)), "cudaMemset (LoRA ranks)");
    }
  }
  slots_ = maxSlots;
  rank_ = maxRank;
}

void AdapterPool::upload(const ModelConfig& c, int slot, const LoraAdapter& ad) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pools_.empty()) throw std::runtime_error("CUDA forward: uploadAdapter before reserveAdapters (the slot pools are not sized)");
  if (slot < 0 || slot >= slots_) {
    throw std::runtime_error("CUDA forward: adapter slot " + std::to_string(slot) + " is out of range [0, " +
                             std::to_string(slots_) + ")");
  }
  if (ad.numLayers != c.numHiddenLayers) {
    throw std::runtime_error("CUDA forward: adapter has " + std::to_string(ad.numLayers) + " layers, the model " +
                             std::to_string(c.numHiddenLayers));
  }
  // Bytes: every pair's A and B^T in bf16, plus one int32 rank per (layer, module).
  size_t bytes = pools_.size() * 48;  // int32 rank + alignment padding of each (layer, module)
  for (int l = 0; l < c.numHiddenLayers; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      const LoraPair* p = ad.get(l, LoraModule(m));
      if (!p) continue;
      const DevLoraPool& d = pool(l, m);
      if (p->rank < 1 || p->rank > rank_) {
        throw std::runtime_error("CUDA forward: adapter rank " + std::to_string(p->rank) + " (layer " + std::to_string(l) + " " +
                                 hf::moduleName(LoraModule(m)) + ") is greater than the slots' max rank " + std::to_string(rank_));
      }
      if (p->a.size() != size_t(p->rank) * size_t(d.in) || p->bT.size() != size_t(p->rank) * size_t(d.out)) {
        throw std::runtime_error(std::string("CUDA forward: adapter pair of ") + hf::moduleName(LoraModule(m)) + " has the wrong size");
      }
      bytes += (p->a.size() + p->bT.size()) * 2;
    }
  }
  // The previous upload may still read the staging buffer.
  check(cudaEventSynchronize(event_), "cudaEventSynchronize (previous adapter upload)");
  char* host = static_cast<char*>(staging_.ensure(bytes, "cudaHostAlloc (adapter staging)"));
  size_t off = 0;
  for (int l = 0; l < c.numHiddenLayers; l++) {
    for (int m = 0; m < kNumLoraModules; m++) {
      const LoraPair* p = ad.get(l, LoraModule(m));
      const DevLoraPool& d = pool(l, m);
      int32_t* rank = reinterpret_cast<int32_t*>(host + off);
      *rank = p ? p->rank : 0;
      check(cudaMemcpyAsync(d.rank + slot, rank, sizeof(int32_t), cudaMemcpyHostToDevice, stream_), "adapter upload (rank)");
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
        void* dst = which == 0 ? at(d.a, int64_t(slot) * rank_ * d.in) : at(d.bt, int64_t(slot) * rank_ * d.out);
        check(cudaMemcpyAsync(dst, h, src.size() * 2, cudaMemcpyHostToDevice, stream_), "adapter upload (A / B^T)");
        off += src.size() * 2;
        off = (off + 15) & ~size_t(15);
      }
    }
  }
  if (off > staging_.cap) throw std::logic_error("CUDA forward: adapter staging overflow");
  check(cudaEventRecord(event_, stream_), "cudaEventRecord (adapter upload)");
}

void AdapterPool::wait() {
  std::lock_guard<std::mutex> lock(mu_);
  check(cudaEventSynchronize(event_), "cudaEventSynchronize (adapter upload)");
}

void AdapterPool::streamWait(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  check(cudaStreamWaitEvent(stream, event_, 0), "cudaStreamWaitEvent (adapter upload)");
}

}  // namespace openlora::cuda
