// See large_pages.h.
#include "large_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace openlora::cpu {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeMin = kHugePage;  // smaller blocks hold no aligned huge page: operator new
}  // namespace

template <typename T>
void* LargePageAllocator<T>::largePageAlloc(size_t bytes) {
  if (bytes < kHugeMin) return ::operator new(bytes);
  const size_t len = (bytes + 4095) & ~size_t(4095);
  void* m = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  // Keep [aligned, aligned + len) and unmap the slack on both sides.
  const uintptr_t start = reinterpret_cast<uintptr_t>(m), aligned = (start + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  if (aligned > start) ::munmap(m, aligned - start);
  const uintptr_t end = start + len + kHugePage;
  if (end > aligned + len) ::munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
#ifdef MADV_HUGEPAGE
  (void)::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void*>(aligned);
}

template <typename T>
void LargePageAllocator<T>::largePageFree(void* p, size_t bytes) {
  if (!p) return;
  if (bytes < kHugeMin) return ::operator delete(p);
  ::munmap(p, (bytes + 4095) & ~size_t(4095));
}

template struct LargePageAllocator<uint8_t>;

}  // namespace openlora::cpu
