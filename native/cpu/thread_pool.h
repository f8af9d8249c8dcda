// A small fork-join thread pool for the CPU backend's GEMMs, LoRA ops and attention.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace openlora::cpu {

/**
 * Raise the calling thread's nice value by `increment` (Linux: nice is per thread; lower priority
 * needs no privilege). 0 does nothing; failures are ignored (the thread keeps its priority).
 *
 * NOTE(why): the engine lives in the Node process. Its compute threads run flat out during a
 * step while the JS thread parses requests and writes SSE chunks; on a machine with few cores a
 * CPU-bound thread delays the event loop by whole scheduler slices. At a higher nice value the
 * scheduler hands the CPU to the JS thread as soon as it has work (EngineOptions.threadNice).
 */
void lowerThreadPriority(int increment);

/**
 * Fixed set of worker threads running one parallel_for at a time.
 *
 * The calling thread takes part in the work, so `ThreadPool(1)` starts no thread at all.
 * Only one thread (the engine thread) may call parallel_for at a time.
 *
 * NOTE(why): spin-then-sleep, and the caller never waits for a worker that has not started.
 * A decode step of the demo model issues ~35 parallel ops of a few microseconds each; waking a
 * worker through a condition variable costs 10-50 us, more than the op, so idle workers spin
 * (with pause) for up to `kSpinMicros` before they block. On a loaded machine a worker may not
 * be running at all when a job is posted: chunks are claimed dynamically, the caller claims
 * whatever is left, then closes the job and waits only for workers that joined it (are inside a
 * chunk). A worker that arrives after the close skips the job.
 */
class ThreadPool {
 public:
  /**
   * @param threads total threads including the caller (>= 1).
   * @param niceIncrement each worker runs lowerThreadPriority(niceIncrement) when it starts.
   */
  explicit ThreadPool(int threads, int niceIncrement = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  /** How parallelFor hands out [0, n). */
  enum class Schedule : uint8_t {
    /** Each claim takes half of what is left per thread, down to max(grain, n / (16 threads)). */
    Guided,
    /**
     * Each claim takes max(grain, ceil(n / threads)) items: one share per thread, a share that no
     * thread has claimed yet taken by whichever thread is free first (the caller, when a worker is late).
     */
    Even,
  };

  /**
   * Run fn(begin, end) over [0, n) split into chunks of at least `grain` items, handed out
   * dynamically (`schedule`). Returns when every chunk is done. Exceptions from fn are rethrown (the first).
   * Runs inline (no hand-over at all) when n <= grain or the pool has one thread.
   */
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn, Schedule schedule = Schedule::Guided);

  /** How long workers and the caller spin before blocking, in microseconds. */
  static constexpr int kSpinMicros = 100;

 private:
  void workerLoop();
  void runChunks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;   // sleeping workers wait for a new generation
  // Job state word: [generation:32][closed:1][joined workers:31].
  std::atomic<uint64_t> state_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};   // workers blocked on wake_

  // The current job (valid while a parallelFor is in flight; published by generation_).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

}  // namespace openlora::cpu
