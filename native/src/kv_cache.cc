// See kv_cache.h.
#include "kv_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "errors.h"

namespace openlora {

bool parseKvCacheDtype(const std::string& s, DType* out) {
  if (s == "float32") *out = DType::F32;
  else if (s == "bfloat16") *out = DType::BF16;
  else return false;
  return true;
}

const char* kvCacheDtypeName(DType t) { return t == DType::BF16 ? "bfloat16" : "float32"; }

KvCache::KvCache(int numLayers, int numKvHeads, int headDim, int numBlocks, int blockSize, bool prefixCaching, DType dtype)
    : numLayers_(numLayers),
      numKvHeads_(numKvHeads),
      headDim_(headDim),
      dtype_(dtype),
      layerBytes_(int64_t(numBlocks) * numKvHeads * blockSize * headDim * dtypeSize(dtype)),
      alloc_(numBlocks, blockSize, prefixCaching) {
  // NOTE(why): new char[] (no value-initialisation): the OS maps pages on first touch, so a
  // generous budget costs RSS only as far as sequences actually use it. operator new aligns to
  // 16 bytes, enough for every element type; the kernels use unaligned loads anyway.
  data_.reset(new char[size_t(int64_t(numLayers) * 2 * layerBytes_)]);
}

bool SequenceKv::grow(int positions) {
  if (positions > maxPositions_) {
    invalidArgument("SequenceParams.maxTokens", "sequence of " + std::to_string(positions) + " positions exceeds the context length max_model_len (" +
                             std::to_string(maxPositions_) + ")");
  }
  const int bs = blockSize();
  const int need = (positions + bs - 1) / bs;
  while (int(table_.size()) < need) {
    const int b = cache_->allocator().allocate();
    if (b < 0) return false;
    table_.push_back(b);
  }
  return true;
}

void SequenceKv::reserve(int positions) const {
  if (positions > maxPositions_) {
    invalidArgument("SequenceParams.maxTokens", "sequence of " + std::to_string(positions) + " positions exceeds the context length max_model_len (" +
                             std::to_string(maxPositions_) + ")");
  }
  if (int64_t(table_.size()) * blockSize() < positions) {
    throw std::logic_error("KV block table covers " + std::to_string(table_.size() * size_t(blockSize())) + " positions, the step needs " +
                           std::to_string(positions) + " (the scheduler must grow it first)");
  }
}

void SequenceKv::releaseAll() {
  // NOTE(why): tail first, so the LRU evicts a sequence's last blocks before its shared prefix
  // (vLLM frees blocks in reverse order for the same reason).
  for (auto it = table_.rbegin(); it != table_.rend(); ++it) {
    if (*it >= 0) cache_->allocator().release(*it);
  }
  table_.clear();
  hashes_.clear();
  dropped_ = 0;
  length_ = 0;
}

void SequenceKv::dropOutsideWindow() {
  if (window_ <= 0) return;
  const int keepFrom = length_ + 1 - window_;  // first position a future query may read
  const int bs = blockSize();
  while (dropped_ < int(table_.size()) && (dropped_ + 1) * bs <= keepFrom) {
    cache_->allocator().release(table_[size_t(dropped_)]);
    table_[size_t(dropped_)] = -1;
    dropped_++;
  }
}

void SequenceKv::write(int layer, int pos, const float* k, const float* v) {
  const int bs = blockSize(), hd = cache_->headDim(), kvh = cache_->numKvHeads();
  const int64_t block = table_[size_t(pos / bs)], slot = pos % bs;
  if (cache_->dtype() == DType::BF16) {
    uint16_t* kc = static_cast<uint16_t*>(cache_->keys(layer));    // [num_blocks, num_kv_heads, block_size, head_dim] bf16
    uint16_t* vc = static_cast<uint16_t*>(cache_->values(layer));  // [num_blocks, num_kv_heads, block_size, head_dim] bf16
    for (int h = 0; h < kvh; h++) {
      const int64_t off = ((block * kvh + h) * bs + slot) * hd;
      const float* kh = k + int64_t(h) * hd;
      const float* vh = v + int64_t(h) * hd;
      for (int d = 0; d < hd; d++) {
        kc[off + d] = floatToBf16(kh[d]);
        vc[off + d] = floatToBf16(vh[d]);
      }
    }
    return;
  }
  float* kc = static_cast<float*>(cache_->keys(layer));    // [num_blocks, num_kv_heads, block_size, head_dim]
  float* vc = static_cast<float*>(cache_->values(layer));  // [num_blocks, num_kv_heads, block_size, head_dim]
  for (int h = 0; h < kvh; h++) {
    const int64_t off = ((block * kvh + h) * bs + slot) * hd;
    std::copy_n(k + int64_t(h) * hd, hd, kc + off);
    std::copy_n(v + int64_t(h) * hd, hd, vc + off);
  }
}

}  // namespace openlora
