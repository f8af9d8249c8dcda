// Checks cpu::ThreadPool::parallelFor (native/cpu/thread_pool.cc) under both schedules: every item
// of [0, n) is run exactly once, claims respect the grain, an Even job is cut into at most one
// claim per thread, and the first exception thrown by fn reaches the caller while the pool stays
// usable. Built and run by test/native/thread_pool.test.ts. Prints one JSON line; exits 1 on a failure.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "../../../native/cpu/thread_pool.h"

using openlora::cpu::ThreadPool;

int main() {
  int failures = 0, jobs = 0;
  auto fail = [&](const char* what, int threads, long n, long grain, int schedule) {
    failures++;
    std::fprintf(stderr, "FAIL %s: threads %d n %ld grain %ld schedule %d\n", what, threads, n, grain, schedule);
  };
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (long n : {1L, 2L, 3L, 7L, 16L, 17L, 100L, 1000L, 4099L}) {
      for (long grain : {1L, 2L, 5L, 64L}) {
        for (ThreadPool::Schedule schedule : {ThreadPool::Schedule::Guided, ThreadPool::Schedule::Even}) {
          const int s = int(schedule);
          for (int rep = 0; rep < 20; rep++) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::mutex mu;
            std::vector<long> sizes;
            pool.parallelFor(n, grain, [&](int64_t b, int64_t e) {
              for (int64_t i = b; i < e; i++) hits[size_t(i)]++;
              std::lock_guard<std::mutex> lock(mu);
              sizes.push_back(long(e - b));
            }, schedule);
            jobs++;
            for (long i = 0; i < n; i++)
              if (hits[size_t(i)] != 1) {
                fail("item not run exactly once", threads, n, grain, s);
                break;
              }
            long small = 0;
            for (long z : sizes) small += z < grain ? 1 : 0;
            if (small > 1) fail("more than one claim below the grain (only the last may be)", threads, n, grain, s);
            if (schedule == ThreadPool::Schedule::Even && long(sizes.size()) > threads) fail("an Even job cut into more claims than threads", threads, n, grain, s);
          }
        }
      }
    }
    // The first exception reaches the caller; the next job runs normally.
    for (ThreadPool::Schedule schedule : {ThreadPool::Schedule::Guided, ThreadPool::Schedule::Even}) {
      bool caught = false;
      try {
        pool.parallelFor(1000, 1, [&](int64_t b, int64_t e) {
          if (b <= 500 && 500 < e) throw std::runtime_error("item 500");
        }, schedule);
      } catch (const std::runtime_error&) {
        caught = true;
      }
      if (!caught) fail("exception not rethrown", threads, 1000, 1, int(schedule));
      std::atomic<long> sum{0};
      pool.parallelFor(1000, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) sum += long(i);
      }, schedule);
      if (sum != 999L * 1000 / 2) fail("the job after an exception", threads, 1000, 1, int(schedule));
    }
  }
  std::printf("{\"jobs\": %d, \"failures\": %d}\n", jobs, failures);
  return failures == 0 ? 0 : 1;
}
