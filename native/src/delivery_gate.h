// Flow control between the engine thread and the JS thread: how many step deliveries (event
// batches posted to the ThreadSafeFunction) may wait for the JS thread at once.
#pragma once

#include <condition_variable>
#include <mutex>

namespace openlora {

/**
 * A counting gate: acquire() before posting a batch, release() once JS has run it.
 *
 * NOTE(why): the engine thread posts a batch of events after every step and used never to wait.
 * When the JS thread falls behind (many streams, few cores), batches pile up in the TSFN queue:
 * the engine keeps the cores busy computing tokens nobody can send yet, and Node then drains the
 * backlog in one long callback (event-loop lag spikes). Bounding the batches in flight makes the
 * engine sleep instead, which hands its core to the JS thread (vLLM's async output processing
 * has the same one-step lookahead).
 *
 * acquire() is called by the engine thread only; release() and close() by any thread.
 */
class DeliveryGate {
 public:
  /** @param maxInFlight batches that may be posted and not yet run by JS (>= 1). */
  explicit DeliveryGate(int maxInFlight) : max_(maxInFlight < 1 ? 1 : maxInFlight) {}

  /** Wait until fewer than maxInFlight batches are in flight (or the gate is closed); count one. */
  void acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || inFlight_ < max_; });
    inFlight_++;
  }

  /** One batch has run on the JS thread (or was dropped): let the engine post another. */
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (inFlight_ > 0) inFlight_--;
    }
    cv_.notify_one();
  }

  /** Never block again (engine teardown: the JS thread may be the one joining the engine). */
  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int max_;
  int inFlight_ = 0;
  bool closed_ = false;
};

}  // namespace openlora
