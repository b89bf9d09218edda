#include "worker_pool.h"

#include "../logging/log.h"
#include "../protocol/busy_poll.h"

namespace labhost::server {

worker_pool::worker_pool(boost::asio::io_context& io, unsigned max_threads, std::chrono::microseconds busy_poll,
                         std::chrono::microseconds takeover_after)
    : io_(io), max_threads_(std::max(1u, max_threads)), busy_poll_(busy_poll), takeover_after_(takeover_after) {}

worker_pool::~worker_pool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  for (auto& t : extra_threads_) t.thread.join();
}

void worker_pool::call_started() noexcept {
  busy_.fetch_add(1);
  calls_started_.fetch_add(1, std::memory_order_relaxed);
  // Only the first call after a quiet spell wakes the watchdog: no syscall per call.
  if (watchdog_idle_.load(std::memory_order_relaxed) && watchdog_idle_.exchange(false)) {
    std::lock_guard lock(mutex_);
    wake_.notify_all();
  }
}

void worker_pool::call_finished() noexcept { busy_.fetch_sub(1); }

void worker_pool::run() {
  if (max_threads_ > 1) watchdog_ = std::thread([this] { watch(); });
  active_.fetch_add(1);
  keep_running(&worker_pool::run_polling);
  active_.fetch_sub(1);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  std::vector<extra_thread> extras;
  {
    std::lock_guard lock(mutex_);
    extras.swap(extra_threads_);
  }
  for (auto& t : extras) t.thread.join();
}

namespace {

void log_handler_failure(const char* what) noexcept {
  try {
    LABHOST_LOG(error) << "a handler failed outside any connection (" << what << "); serving on";
  } catch (...) {
    // no memory even for the log line: the count says it
  }
}

}  // namespace

void worker_pool::keep_running(void (worker_pool::*serve)()) noexcept {
  while (true) {
    try {
      (this->*serve)();
      return;
    } catch (const std::exception& e) {
      log_handler_failure(e.what());
    } catch (...) {
      log_handler_failure("an exception of unknown type");
    }
    handler_failures_.fetch_add(1);
  }
}

void worker_pool::run_polling() {
  using clock = std::chrono::steady_clock;
  protocol::busy_poll_policy policy(busy_poll_);
  if (policy.window_now().count() == 0) {
    io_.run();
    return;
  }
  while (true) {
    // poll: runs what is ready, epoll included, never sleeps. Work that came while the last
    // handlers ran is found here, by polling too.
    if (const std::size_t ran = io_.poll(); ran > 0) {
      found_by_polling_.fetch_add(ran, std::memory_order_relaxed);
      continue;
    }
    if (io_.stopped()) return;
    const auto window = policy.window_now();
    if (window.count() > 0) {
      const auto until = clock::now() + window;
      std::size_t ran = 0;
      while (ran == 0 && !io_.stopped() && clock::now() < until) ran = io_.poll();
      if (ran > 0) {
        policy.found_by_polling();
        found_by_polling_.fetch_add(ran, std::memory_order_relaxed);
        continue;
      }
    }
    const auto slept_from = clock::now();
    if (io_.run_one() == 0) return;  // stopped
    policy.slept(window.count() > 0, clock::now() - slept_from);
    woken_from_sleep_.fetch_add(1, std::memory_order_relaxed);
  }
}

void worker_pool::run_extra() {
  // Leaves once two threads are free again: one is enough for the I/O.
  while (!io_.stopped()) {
    io_.run_one_for(std::chrono::milliseconds(50));
    if (static_cast<int>(active_.load()) - static_cast<int>(busy_.load()) > 1) break;
  }
  active_.fetch_sub(1);
}

void worker_pool::watch() {
  std::uint64_t seen = calls_started_.load();
  unsigned quiet_ticks = 0;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (wake_.wait_for(lock, takeover_after_, [&] { return stopping_; })) break;
    const std::uint64_t now_started = calls_started_.load();
    const unsigned active = active_.load();
    const unsigned busy = busy_.load();
    // Every running thread is inside a call, and no call started for a whole tick: a call
    // has been running for at least takeover_after. Start another thread for the I/O.
    if (busy > 0 && busy >= active && now_started == seen && active < max_threads_) {
      std::erase_if(extra_threads_, [](extra_thread& t) {
        if (!t.done->load()) return false;
        t.thread.join();
        return true;
      });
      active_.fetch_add(1);
      auto done = std::make_shared<std::atomic<bool>>(false);
      extra_threads_.push_back({std::thread([this, done] {
                                  keep_running(&worker_pool::run_extra);
                                  *done = true;
                                }),
                                done});
    }
    if (now_started == seen && busy == 0) {
      if (++quiet_ticks >= 100) {  // quiet for a while: sleep until the next call
        watchdog_idle_ = true;
        wake_.wait(lock, [&] { return stopping_ || !watchdog_idle_.load(); });
        quiet_ticks = 0;
      }
    } else {
      quiet_ticks = 0;
    }
    seen = calls_started_.load();
  }
}

}  // namespace labhost::server
