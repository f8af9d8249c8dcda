// A small fork-join thread pool for the CPU backend's GEMMs and attention.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace openlora::cpu {

/**
 * Fixed set of worker threads running one parallel_for at a time.
 *
 * The calling thread takes part in the work, so `ThreadPool(1)` starts no thread at all.
 * Only one thread (the engine thread) may call parallel_for at a time.
 */
class ThreadPool {
 public:
  /** @param threads total threads including the caller (>= 1). */
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  /**
   * Run fn(begin, end) over [0, n) split into chunks of at least `grain` items, handed out
   * dynamically. Returns when every chunk is done. Exceptions from fn are rethrown (the first).
   */
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void workerLoop();
  void runChunks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;   // workers wait for a new generation
  std::condition_variable done_;   // the caller waits for active_ == 0
  uint64_t generation_ = 0;
  bool stop_ = false;
  int active_ = 0;                 // workers still inside the current job

  // The current job (valid while a parallelFor is in flight).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

}  // namespace openlora::cpu
