// See block_allocator.h.
#include "block_allocator.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "errors.h"

namespace openlora {

namespace {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t hashKvBlock(uint64_t parent, const int32_t* tokens, int n) {
  uint64_t h = splitmix64(parent ^ 0x6b76626c6f636b31ULL);  // "kvblock1"
  for (int i = 0; i < n; i++) h = splitmix64(h ^ uint64_t(uint32_t(tokens[i])));
  return splitmix64(h ^ uint64_t(n));
}

BlockAllocator::BlockAllocator(int numBlocks, int blockSize, bool prefixCaching)
    : blockSize_(blockSize), prefixCaching_(prefixCaching), meta_(size_t(numBlocks)) {
  if (numBlocks < 1 || blockSize < 1) {
    invalidArgument("EngineOptions.numKvBlocks", "KV cache needs at least one block of at least one token (got " + std::to_string(numBlocks) +
                             " blocks of " + std::to_string(blockSize) + ")");
  }
  free_.reserve(size_t(numBlocks));
  // Lowest ids on top of the stack, so a fresh engine hands out 0, 1, 2, ...
  for (int b = numBlocks - 1; b >= 0; b--) free_.push_back(b);
}

int BlockAllocator::allocate() {
  int b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();  // evict the least recently released cached block
    lru_.pop_front();
    Meta& m = meta_[size_t(b)];
    m.inLru = false;
    byHash_.erase(m.hash);
    m.registered = false;
    m.tokens.clear();
  } else {
    return -1;
  }
  meta_[size_t(b)].refs = 1;
  return b;
}

void BlockAllocator::release(int block) {
  Meta& m = meta_[size_t(block)];
  if (m.refs <= 0) throw std::logic_error("KV block " + std::to_string(block) + " released more often than taken");
  if (--m.refs > 0) return;
  if (m.registered) {
    lru_.push_back(block);
    m.lruPos = std::prev(lru_.end());
    m.inLru = true;
  } else {
    free_.push_back(block);
  }
}

int BlockAllocator::lookup(uint64_t hash, uint64_t parent, const int32_t* tokens) {
  if (!prefixCaching_) return -1;
  auto it = byHash_.find(hash);
  if (it == byHash_.end()) return -1;
  Meta& m = meta_[size_t(it->second)];
  // NOTE(why): a 64-bit hash collision would silently reuse foreign KV; comparing the parent
  // hash and the tokens leaves only a collision of the parent chain itself (2^-64 per pair).
  if (m.parent != parent || !std::equal(m.tokens.begin(), m.tokens.end(), tokens)) return -1;
  if (m.inLru) {
    lru_.erase(m.lruPos);
    m.inLru = false;
  }
  m.refs++;
  return it->second;
}

bool BlockAllocator::registerFull(int block, uint64_t hash, uint64_t parent, const int32_t* tokens) {
  if (!prefixCaching_) return false;
  Meta& m = meta_[size_t(block)];
  if (m.registered || m.refs <= 0 || byHash_.count(hash)) return false;
  m.registered = true;
  m.hash = hash;
  m.parent = parent;
  m.tokens.assign(tokens, tokens + blockSize_);
  byHash_.emplace(hash, block);
  return true;
}

}  // namespace openlora
