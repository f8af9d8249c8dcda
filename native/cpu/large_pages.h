// Big weight buffers in 2 MiB transparent huge pages (the packed float weights of gemm_packed.h
// and the quantized ones of gemm_quant.h).
#pragma once

#include <cstddef>

namespace openlora::cpu {

/**
 * Allocator for big weight buffers: blocks of 2 MiB or more are mmap'ed at a 2 MiB boundary and
 * marked MADV_HUGEPAGE (Linux transparent huge pages in "madvise" mode), smaller ones come from
 * operator new. Pages are touched only when written, so resident memory is the bytes used.
 *
 * NOTE(why): a batch-1 decode step streams every weight once. With 4 KiB pages a 300 MB model is
 * 73k pages, each a TLB miss (a page walk) on the stream; 2 MiB pages cut that 512x. Where THP is
 * off or the kernel has no huge page free, the mapping is ordinary 4 KiB pages.
 */
template <typename T>
struct LargePageAllocator {
  using value_type = T;
  LargePageAllocator() = default;
  template <typename U>
  LargePageAllocator(const LargePageAllocator<U>&) {}
  /** @throws std::bad_alloc when the memory cannot be mapped. */
  T* allocate(size_t n) { return static_cast<T*>(largePageAlloc(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { largePageFree(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const LargePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const LargePageAllocator<U>&) const { return false; }
  /** `bytes` of memory (see the class); @throws std::bad_alloc. */
  static void* largePageAlloc(size_t bytes);
  /** Frees what largePageAlloc(bytes) returned (same `bytes`). */
  static void largePageFree(void* p, size_t bytes);
};

}  // namespace openlora::cpu
