// LoRA adapters applied unmerged (PEFT LoraLayer): y = W x + sum_i w_i * s_i * B_i (A_i x).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../cpu/sgmv.h"
#include "config.h"
#include "hf_names.h"  // LoraModule and its names

namespace openlora {

/** Input / output features of a module's base linear layer for this config. */
int loraModuleIn(const ModelConfig& c, LoraModule m);
int loraModuleOut(const ModelConfig& c, LoraModule m);

/**
 * One LoRA weight matrix in host memory, row-major, in the adapter file's dtype: F32 stays F32;
 * BF16 and F16 stay 16-bit (converted exactly to float32 inside cpu::sgmv, half the bytes to
 * stream per decode step). Built empty; filled by assignF32 / assign16, or as F32 by
 * resize + operator[] (generated adapters).
 */
class LoraMatrix {
 public:

  DType dtype() const { return dtype_; }
  /** Elements. */
  size_t size() const { return n_; }
  /** Bytes in memory (size() * 4 or * 2). */
  size_t bytes() const { return n_ * size_t(dtypeSize(dtype_)); }
  /** Become F32 with n zeros. */
  void resize(size_t n);
  /** F32 element i (mutable). @throws std::logic_error when the matrix is not F32. */
  float& operator[](size_t i);
  /** Element i as float32 (exact for every dtype). No bounds check. */
  float get(size_t i) const;
  /** Take float32 values. */
  void assignF32(std::vector<float> v);
  /** Take 16-bit values (t = BF16 or F16, raw little-endian bits). @throws std::logic_error for F32. */
  void assign16(std::vector<uint16_t> bits, DType t);
  /** Raw 16-bit storage (empty unless dtype() is BF16 / F16). */
  const std::vector<uint16_t>& bits16() const { return h16_; }
  /** All elements as float32. */
  std::vector<float> toF32() const;
  /** The view cpu::LoraBatch::add takes. */
  cpu::LoraWeights data() const {
    return dtype_ == DType::F32 ? cpu::LoraWeights(f32_.data()) : cpu::LoraWeights(h16_.data(), dtype_);
  }

 private:
  DType dtype_ = DType::F32;
  size_t n_ = 0;
  std::vector<float> f32_;
  std::vector<uint16_t> h16_;
};

/** One adapted linear layer: A [rank, in] and B^T [rank, out], each F32, BF16 or F16. */
struct LoraPair {
  int rank = 0;
  float scaling = 1.0f;  // lora_alpha / r, or / sqrt(r) for rsLoRA
  LoraMatrix a;          // [rank, in]  (lora_A)
  LoraMatrix bT;         // [rank, out] (lora_B transposed: the expand of cpu::sgmv reads rows of it)
};

/** A loaded adapter: the pairs it targets; nullptr where it leaves the base layer alone. */
struct LoraAdapter {
  int numLayers = 0;
  std::vector<std::unique_ptr<LoraPair>> pairs;  // [numLayers * kNumLoraModules]
  const LoraPair* get(int layer, LoraModule m) const { return pairs[size_t(layer) * kNumLoraModules + int(m)].get(); }
  /** Bytes of every A and B held. */
  int64_t bytes() const {
    int64_t b = 0;
    for (const auto& p : pairs) b += p ? int64_t(p->a.bytes() + p->bT.bytes()) : 0;
    return b;
  }
};

/**
 * A fused projection of Phi-3 (Phi3Attention.qkv_proj = [q | k | v], Phi3MLP.gate_up_proj =
 * [gate | up]): its PEFT pair is split at load into one pair per part, sharing lora_A and taking
 * lora_B's rows of that part (exact: B A x restricted to the part's outputs).
 */
enum class FusedModule { None, Qkv, GateUp };

/**
 * Parse a module name of an AdapterModuleSpec: the seven projections, or (Phi-3) "qkv_proj" /
 * "gate_up_proj" (module = Q / Gate, fused set). False when unknown.
 */
bool parseLoraModuleName(const std::string& s, LoraModule* module, FusedModule* fused);

/** What to read for one pair (AdapterModuleSpec of native/types.ts). */
struct LoraModuleSpec {
  int layer = 0;
  LoraModule module = LoraModule::Q;
  FusedModule fused = FusedModule::None;  // qkv_proj / gate_up_proj: split into Q,K,V / Gate,Up
  std::string aName;  // lora_A tensor: [r, in], or [in, r] when fanInFanOut
  std::string bName;  // lora_B tensor: [out, r], or [r, out] when fanInFanOut
  float scaling = 1.0f;
  bool fanInFanOut = false;
};

/**
 * Read an adapter safetensors file and build a LoraAdapter (all-or-nothing). A and B keep the
 * file's dtype: F32 as F32, BF16 / F16 as 16-bit (lossless; see LoraMatrix); a pair whose A and
 * B differ in dtype keeps each as it is.
 * Checks: every named tensor exists, has 2 dims that fit the base layer ([r, in] / [out, r],
 * transposed when fanInFanOut), A and B agree on r, 1 <= r <= maxRank, the same (layer, module)
 * is not given twice, and the values are finite.
 * @throws Error (errors.h) naming the file, tensor and both numbers of any mismatch.
 */
std::shared_ptr<const LoraAdapter> loadLoraAdapter(const std::string& path, const std::vector<LoraModuleSpec>& modules,
                                                   const ModelConfig& config, int maxRank);

/** A sequence's use of one slot: the adapter (kept alive while used) and its weight w_i. */
struct ActiveLora {
  int slot = -1;
  float weight = 1.0f;
  std::shared_ptr<const LoraAdapter> adapter;
};

/**
 * The fixed table of adapter slots, shared by the JS thread (load/unload/addSequence) and the
 * engine thread (release at finish). Thread-safe; every method takes the table's own mutex.
 */
class AdapterSlots {
 public:
  AdapterSlots(int maxLoras, int maxRank) : maxRank_(maxRank), slots_(size_t(maxLoras)) {}

  int maxLoras() const { return int(slots_.size()); }
  int maxRank() const { return maxRank_; }

  /** Reserve a free slot for a load in progress. @throws when every slot is loaded or loading. */
  int reserve();
  /** Fill a reserved slot. */
  void install(int slot, std::shared_ptr<const LoraAdapter> adapter);
  /** Give back a reserved slot whose load failed. */
  void abandon(int slot);
  /** Free a loaded slot. @throws for a bad/empty slot or when live sequences still use it. */
  void unload(int slot);
  /**
   * Pin the slots of an adapter set for a new sequence (refcount + 1 each).
   * @throws when a slot is out of range or not loaded, or a weight is not finite.
   */
  std::vector<ActiveLora> acquire(const std::vector<std::pair<int, float>>& refs);
  /** Unpin what acquire() returned. */
  void release(const std::vector<ActiveLora>& active);
  /** Slots loaded or loading. */
  int used() const;
  /** Bytes of the adapters in loaded slots (LoraAdapter::bytes). */
  int64_t loadedBytes() const;

 private:
  enum class State { Free, Loading, Loaded };
  struct Slot {
    State state = State::Free;
    int refs = 0;  // live sequences / forwards using it
    std::shared_ptr<const LoraAdapter> adapter;
  };
  int maxRank_;
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
};

}  // namespace openlora
