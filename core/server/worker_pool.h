// worker_pool.h: the threads that run a daemon's io_context: one while calls are quick, more
// (up to the pool size) while calls block.
//
// Every extra thread on a shared io_context costs a thread wakeup per request (tens of
// microseconds on these machines, more than a call itself). So one thread does the I/O and
// runs each call inline while calls are short; a watchdog notices when every running thread
// has been inside one call for longer than `takeover_after`, and starts another thread, which
// keeps reading the other connections. An extra thread leaves again once two threads are
// free. Net effect: sequential clients see no thread hop, and a slow call never holds up the
// daemon's other connections for more than `takeover_after` (unless pool_size calls block).
// Between requests the I/O thread polls for the next one for `busy_poll` before it sleeps, when
// the last one came that soon (protocol/busy_poll.h): a sequential client then never waits
// for the daemon to be woken.
// A handler that throws is the last resort of the daemon's exception boundary (connections
// guard their own handlers; see connection::guarded): it is logged and counted, and the
// thread goes on running the io_context, so no exception ends the daemon or terminates it
// from an extra thread.
// Thread-safety: call_started()/call_finished() from pool threads; the rest from run()'s thread.
#ifndef LABHOST_SERVER_WORKER_POOL_H
#define LABHOST_SERVER_WORKER_POOL_H

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace labhost::server {

class worker_pool {
 public:
  worker_pool(boost::asio::io_context& io, unsigned max_threads,
              std::chrono::microseconds busy_poll = std::chrono::microseconds::zero(),
              std::chrono::microseconds takeover_after = std::chrono::milliseconds(2));
  ~worker_pool();
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  /// Runs the io_context on the calling thread (and extra threads as needed) until it stops.
  void run();

  /// Brackets a driver call that runs on a pool thread.
  void call_started() noexcept;
  void call_finished() noexcept;
  /// call_started() for its lifetime: also when the call throws.
  class call_scope {
   public:
    explicit call_scope(worker_pool& pool) noexcept : pool_(pool) { pool_.call_started(); }
    ~call_scope() { pool_.call_finished(); }
    call_scope(const call_scope&) = delete;
    call_scope& operator=(const call_scope&) = delete;

   private:
    worker_pool& pool_;
  };

  /// Threads running the io_context right now (for tests and ps).
  unsigned running() const noexcept { return active_.load(); }

  /// Handlers that threw out of the io_context (for tests and logs).
  std::uint64_t handler_failures() const noexcept { return handler_failures_.load(); }

  /// Handlers the I/O thread ran after finding them by a poll (the window's, or the one right
  /// after the last handlers ran), and times it was woken from sleep (for tests).
  std::uint64_t found_by_polling() const noexcept { return found_by_polling_.load(); }
  std::uint64_t woken_from_sleep() const noexcept { return woken_from_sleep_.load(); }

 private:
  /// Runs `serve` again after every handler that throws out of it, until it returns.
  void keep_running(void (worker_pool::*serve)()) noexcept;
  /// io_context::run() with busy polling before each sleep.
  void run_polling();
  void watch();
  void run_extra();

  boost::asio::io_context& io_;
  const unsigned max_threads_;
  const std::chrono::microseconds busy_poll_;
  const std::chrono::microseconds takeover_after_;

  std::atomic<unsigned> active_{0};          // threads running the io_context
  std::atomic<unsigned> busy_{0};            // of those, threads inside a call
  std::atomic<std::uint64_t> calls_started_{0};
  std::atomic<bool> watchdog_idle_{false};   // the watchdog sleeps until the next call
  std::atomic<std::uint64_t> found_by_polling_{0};  // written by run()'s thread only
  std::atomic<std::uint64_t> woken_from_sleep_{0};
  std::atomic<std::uint64_t> handler_failures_{0};

  std::mutex mutex_;  // guards stopping_, extra_threads_; with wake_
  std::condition_variable wake_;
  bool stopping_ = false;
  struct extra_thread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<extra_thread> extra_threads_;  // finished ones are joined at the next start
  std::thread watchdog_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_WORKER_POOL_H
