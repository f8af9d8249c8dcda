// See thread_pool.h.
#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cerrno>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPENLORA_PAUSE() _mm_pause()
#else
#define OPENLORA_PAUSE() std::this_thread::yield()
#endif

namespace openlora::cpu {

namespace {

constexpr uint64_t kClosed = uint64_t(1) << 31;
constexpr uint64_t kCountMask = kClosed - 1;
inline uint32_t generationOf(uint64_t s) { return uint32_t(s >> 32); }

/** Spin until pred() or kSpinMicros pass; true when pred() became true. */
template <typename Pred>
bool spinFor(Pred pred) {
  using clock = std::chrono::steady_clock;
  const auto until = clock::now() + std::chrono::microseconds(ThreadPool::kSpinMicros);
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (pred()) return true;
      OPENLORA_PAUSE();
    }
    if (clock::now() >= until) return pred();
  }
}

}  // namespace

void lowerThreadPriority(int increment) {
#if defined(__linux__)
  if (increment <= 0) return;
  const pid_t tid = pid_t(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, id_t(tid));
  if (errno == 0) (void)setpriority(PRIO_PROCESS, id_t(tid), std::min(19, now + increment));
#else
  (void)increment;
#endif
}

ThreadPool::ThreadPool(int threads, int niceIncrement) {
  threads = std::max(1, threads);
  for (int i = 1; i < threads; i++) {
    workers_.emplace_back([this, niceIncrement] {
      lowerThreadPriority(niceIncrement);
      workerLoop();
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::runChunks() {
  const int64_t threads = size();
  for (;;) {
    // Guided self-scheduling (Polychronopoulos & Kuck, 1987): each claim takes 1/(2 threads) of
    // what is left, never less than chunk_, so chunks shrink toward the end of the job.
    // NOTE(why): a decode step is ~250 short memory-bound ops; with equal chunks, the thread that
    // finishes first idles for up to a whole chunk at the end of every op (~18% of the worker's
    // time in a batch-1 profile). Which thread runs which items never changes a result.
    int64_t begin = next_.load(std::memory_order_relaxed), end = 0;
    do {
      if (begin >= n_) return;
      end = std::min(n_, begin + std::max(chunk_, (n_ - begin) / (2 * threads)));
    } while (!next_.compare_exchange_weak(begin, end, std::memory_order_relaxed));
    try {
      (*fn_)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::workerLoop() {
  uint32_t seen = 0;
  for (;;) {
    auto ready = [&] { return stop_.load(std::memory_order_relaxed) || generationOf(state_.load(std::memory_order_seq_cst)) != seen; };
    if (!spinFor(ready)) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_++;
      wake_.wait(lock, ready);
      sleepers_--;
    }
    if (stop_.load()) return;
    // Join the job unless the caller already closed it (then every chunk is taken: skip it).
    uint64_t s = state_.load(std::memory_order_acquire);
    seen = generationOf(s);
    bool joined = false;
    while (!(s & kClosed) && generationOf(s) == seen) {
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    runChunks();
    state_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn, Schedule schedule) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  // Smallest claim: the grain, and at least 1/(16 threads) of the job (claims start larger,
  // runChunks); Even: one thread's share, so that every claim is one.
  const int64_t chunk = std::max(grain, schedule == Schedule::Even ? (n + size() - 1) / size() : n / (16 * size()));
  fn_ = &fn;
  n_ = n;
  chunk_ = chunk;
  next_.store(0, std::memory_order_relaxed);
  error_ = nullptr;
  const uint32_t gen = generationOf(state_.load(std::memory_order_relaxed)) + 1;
  state_.store(uint64_t(gen) << 32, std::memory_order_seq_cst);  // publishes the job; count 0, open
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {  // seq_cst: pairs with the sleeper's check
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  runChunks();
  // Every chunk is claimed. Close the job and wait for the workers inside it (they are running).
  state_.fetch_or(kClosed, std::memory_order_acq_rel);
  for (int spins = 0; (state_.load(std::memory_order_acquire) & kCountMask) != 0; spins++) {
    if (spins < 4096) OPENLORA_PAUSE();
    else std::this_thread::yield();
  }
  fn_ = nullptr;
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    err = error_;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace openlora::cpu
