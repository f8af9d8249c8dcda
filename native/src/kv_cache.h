// Paged KV cache (vLLM's PagedAttention, Kwon et al. 2023; S-LoRA's unified paging): one pool
// of fixed-size blocks per engine, and per-sequence block tables into it.
//
// KvCache owns the storage and the BlockAllocator. SequenceKv is one sequence's view: its block
// table, how many positions are computed, and the chain hashes of its leading full blocks
// (prefix caching). The CPU forward (cpu/forward.cc) only calls reserve / write / blockTable /
// setLength and reads the pool through cpu::pagedAttention.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/paged_attention.h"  // PagedAttentionRow; dtype.h: DType, floatToBf16
#include "block_allocator.h"

namespace openlora {

/**
 * Parse EngineOptions.kvCacheDtype (vLLM kv_cache_dtype): "float32" -> F32, "bfloat16" -> BF16.
 * Returns false for anything else (e.g. "fp8"), leaving `out` untouched.
 */
bool parseKvCacheDtype(const std::string& s, DType* out);

/** The EngineOptions.kvCacheDtype spelling of a KV element type: "float32" or "bfloat16". */
const char* kvCacheDtypeName(DType t);

/** The block pool of one engine: storage for every layer's keys and values, plus its allocator. */
class KvCache {
 public:
  /**
   * @param numBlocks blocks in the pool; @param blockSize tokens per block; @param dtype element
   * type of the stored K/V (vLLM kv_cache_dtype): F32, or BF16 (rounded to nearest even on write).
   * Storage is allocated uninitialised (pages are touched only when blocks are first used).
   */
  KvCache(int numLayers, int numKvHeads, int headDim, int numBlocks, int blockSize, bool prefixCaching,
          DType dtype = DType::F32);

  /** Bytes of K and V storage one block takes over all layers: 4 bytes per element (F32) or 2 (BF16). */
  static int64_t bytesPerBlock(int numLayers, int numKvHeads, int headDim, int blockSize, DType dtype = DType::F32) {
    return int64_t(numLayers) * 2 * numKvHeads * headDim * blockSize * int64_t(dtypeSize(dtype));
  }

  int numLayers() const { return numLayers_; }
  int numKvHeads() const { return numKvHeads_; }
  int headDim() const { return headDim_; }
  int blockSize() const { return alloc_.blockSize(); }
  /** Element type of the stored keys and values. */
  DType dtype() const { return dtype_; }
  BlockAllocator& allocator() { return alloc_; }
  const BlockAllocator& allocator() const { return alloc_; }

  /** Keys of one layer: [num_blocks, num_kv_heads, block_size, head_dim] of dtype() (float or bf16 bits). */
  void* keys(int layer) { return data_.get() + (int64_t(layer) * 2) * layerBytes_; }
  /** Values of one layer: [num_blocks, num_kv_heads, block_size, head_dim] of dtype() (float or bf16 bits). */
  void* values(int layer) { return data_.get() + (int64_t(layer) * 2 + 1) * layerBytes_; }

 private:
  int numLayers_, numKvHeads_, headDim_;
  DType dtype_;
  int64_t layerBytes_;               // bytes of one layer's K (or V): num_blocks * kvHeads * blockSize * headDim * element size
  std::unique_ptr<char[]> data_;     // [num_layers, 2 (K, V), num_blocks, num_kv_heads, block_size, head_dim] of dtype_
  BlockAllocator alloc_;
};

/**
 * One sequence's keys and values for every layer: a block table into a KvCache.
 * Releases its blocks when destroyed (or on releaseAll, used by preemption).
 */
class SequenceKv {
 public:
  /**
   * @param maxPositions hard cap (ModelConfig::maxModelLen).
   * @param window ModelConfig::kvWindow(): when > 0 every layer attends to the last `window`
   *   positions only, so dropOutsideWindow() may free blocks wholly before them.
   */
  SequenceKv(KvCache* cache, int maxPositions, int window = 0) : cache_(cache), maxPositions_(maxPositions), window_(window) {}
  ~SequenceKv() { releaseAll(); }
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  KvCache& cache() { return *cache_; }
  int blockSize() const { return cache_->blockSize(); }

  /**
   * Grow the block table to cover positions [0, positions), allocating blocks. Returns false
   * when the pool ran out (blocks already taken are kept). Throws past maxPositions.
   */
  bool grow(int positions);
  /** Check the block table covers [0, positions) (the engine grows it before each step). */
  void reserve(int positions) const;
  /** Append a block already holding a reference (a prefix-cache hit). */
  void appendBlock(int block) { table_.push_back(block); }
  /** Give every block back to the allocator and forget everything (length 0). */
  void releaseAll();
  /**
   * Sliding window: free the blocks no future query can read, i.e. those wholly before position
   * length() + 1 - window (a query at p >= length() reads keys (p - window, p]). Their block
   * table entries become -1; positions keep their block index. No-op without a window.
   * Call after the step's full blocks were registered for prefix caching.
   */
  void dropOutsideWindow();
  /** Blocks held now (freed sliding-window entries excluded). */
  int heldBlocks() const { return int(table_.size()) - dropped_; }

  /**
   * Store the key and value of position `pos` of one layer. @param k, v [num_kv_heads * head_dim]
   * float32; a BF16 pool stores them rounded to nearest even (floatToBf16, dtype.h).
   */
  void write(int layer, int pos, const float* k, const float* v);

  /** Block table: [numBlocks()] block ids (-1: dropped, dropOutsideWindow); position p lives in block table[p / blockSize]. */
  const int32_t* blockTable() const { return table_.data(); }
  int numBlocks() const { return int(table_.size()); }

  /** Positions already computed (the next token goes at this position). */
  int length() const { return length_; }
  void setLength(int n) { length_ = n; }

  /** Chain hashes of the leading full blocks already hashed (registered or looked up): [n]. */
  std::vector<uint64_t>& blockHashes() { return hashes_; }

 private:
  KvCache* cache_;
  int maxPositions_;
  int window_ = 0;   // 0, or the sliding window every layer uses (positions)
  int dropped_ = 0;  // leading table entries freed by dropOutsideWindow (-1)
  int length_ = 0;
  std::vector<int32_t> table_;    // [ceil(capacity / blockSize)] block ids
  std::vector<uint64_t> hashes_;  // [full blocks hashed so far]
};

}  // namespace openlora
