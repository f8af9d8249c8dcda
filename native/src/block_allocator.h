// KV block bookkeeping: a free list, reference counts, and the prefix cache (a hash table of full
// blocks plus an LRU of the evictable ones).
//
// After vLLM's BlockPool / KVCacheManager (vllm/v1/core/block_pool.py, kv_cache_manager.py) and
// S-LoRA's unified memory pool: blocks are fixed-size pages of the KV cache; a sequence holds one
// reference per block of its block table. A *full* block can be registered under the hash of its
// contents (parent block's hash, adapter identity, its tokens); a later sequence with the same
// adapter set and the same token prefix takes a reference instead of recomputing it. When the
// last reference goes, a registered block is not freed but parked in an LRU ("cached"): still
// findable, reclaimed (evicted) only when no uncached free block is left.
//
// Block states (every block is in exactly one):
//   in use  refs > 0                      (held by at least one sequence's block table)
//   free    refs == 0, not registered     (in free_)
//   cached  refs == 0, registered         (in lru_ and byHash_; evictable)
// So numFree() + numCached() + (blocks in use) == numBlocks() at all times.
//
// Engine thread only (not thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace openlora {

/** Hash of one full block's contents chained to its parent (splitmix64-based, 64-bit). */
uint64_t hashKvBlock(uint64_t parent, const int32_t* tokens, int n);

class BlockAllocator {
 public:
  /**
   * @param numBlocks blocks in the pool (>= 1); @param blockSize tokens per block (>= 1);
   * @param prefixCaching when false, lookup() always misses and registerFull() is a no-op.
   */
  BlockAllocator(int numBlocks, int blockSize, bool prefixCaching);

  int numBlocks() const { return int(meta_.size()); }
  int blockSize() const { return blockSize_; }
  bool prefixCaching() const { return prefixCaching_; }
  /** Blocks with no reference and no cached contents. */
  int numFree() const { return int(free_.size()); }
  /** Blocks with no reference that still hold a registered prefix (evictable). */
  int numCached() const { return int(lru_.size()); }
  /** Blocks an allocate() can return right now (free + evictable). */
  int numAvailable() const { return numFree() + numCached(); }

  /**
   * Take a block with one reference: an uncached free block first, else evict the least recently
   * released cached block (its hash entry is dropped). Returns -1 when every block is in use.
   */
  int allocate();
  /** Drop one reference; at zero a registered block becomes cached (most recent), else free. */
  void release(int block);
  /**
   * Find the full block registered under `hash` whose parent hash and tokens [blockSize] match;
   * on a hit take one reference (reviving it from the LRU when cached) and return it, else -1.
   */
  int lookup(uint64_t hash, uint64_t parent, const int32_t* tokens);
  /**
   * Register an in-use full block under `hash`. Returns false (and registers nothing) when
   * prefix caching is off, the block is already registered, or another block holds the hash
   * (two sequences computed the same prefix at once; this copy then stays private).
   */
  bool registerFull(int block, uint64_t hash, uint64_t parent, const int32_t* tokens);
  int refs(int block) const { return meta_[size_t(block)].refs; }

 private:
  struct Meta {
    int refs = 0;
    bool registered = false;
    uint64_t hash = 0;
    uint64_t parent = 0;
    std::vector<int32_t> tokens;        // [blockSize] when registered (compared on lookup)
    bool inLru = false;
    std::list<int>::iterator lruPos;    // valid when inLru
  };

  int blockSize_;
  bool prefixCaching_;
  std::vector<Meta> meta_;                      // [numBlocks]
  std::vector<int> free_;                       // stack of free block ids
  std::list<int> lru_;                          // cached blocks, least recently released first
  std::unordered_map<uint64_t, int> byHash_;    // registered hash -> block
};

}  // namespace openlora
