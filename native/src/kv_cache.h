// Per-sequence KV cache: contiguous, position-major, grown by doubling.
//
// NOTE(why): kept behind this small class so the paged cache (blocks + block tables) can replace
// it later without touching the model: the forward pass only calls reserve/keyRow/valueRow/
// keys/values/setLength.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace openlora {

/** Keys and values of one sequence for every layer. */
class SequenceKv {
 public:
  /**
   * @param numLayers decoder layers; @param kvDim numKeyValueHeads * headDim floats per position;
   * @param maxPositions hard cap (max_position_embeddings).
   */
  SequenceKv(int numLayers, int kvDim, int maxPositions)
      : kvDim_(kvDim), maxPositions_(maxPositions), keys_(numLayers), values_(numLayers) {}

  /** Make room for positions [0, positions). Throws past maxPositions. Invalidates pointers. */
  void reserve(int positions) {
    if (positions > maxPositions_) {
      throw std::runtime_error("sequence of " + std::to_string(positions) + " positions exceeds max_position_embeddings (" +
                               std::to_string(maxPositions_) + ")");
    }
    if (positions <= capacity_) return;
    int cap = std::max(positions, std::min(maxPositions_, std::max(64, capacity_ * 2)));
    for (auto& k : keys_) k.resize(size_t(cap) * kvDim_);
    for (auto& v : values_) v.resize(size_t(cap) * kvDim_);
    capacity_ = cap;
  }

  /** Row to write the key of `pos` into: [kvDim]. pos < capacity. */
  float* keyRow(int layer, int pos) { return keys_[layer].data() + size_t(pos) * kvDim_; }
  /** Row to write the value of `pos` into: [kvDim]. */
  float* valueRow(int layer, int pos) { return values_[layer].data() + size_t(pos) * kvDim_; }
  /** All keys of a layer: [capacity, kvDim]; positions < the caller's context are valid. */
  const float* keys(int layer) const { return keys_[layer].data(); }
  /** All values of a layer: [capacity, kvDim]. */
  const float* values(int layer) const { return values_[layer].data(); }

  /** Positions already computed (the next token goes at this position). */
  int length() const { return length_; }
  void setLength(int n) { length_ = n; }

 private:
  int kvDim_;
  int maxPositions_;
  int capacity_ = 0;
  int length_ = 0;
  std::vector<std::vector<float>> keys_;    // per layer: [capacity, kvDim]
  std::vector<std::vector<float>> values_;  // per layer: [capacity, kvDim]
};

}  // namespace openlora
