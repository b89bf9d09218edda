// busy_poll.h: when the reader of a connection polls for the next bytes before it sleeps.
// Both ends use it: the daemon's I/O thread between requests, the client waiting for a reply.
//
// A thread that sleeps until bytes arrive costs a scheduler wakeup to the thread that sends
// them, and on a virtual machine whose other CPU is idle, an interrupt to a halted virtual
// CPU: 20 to 40 us each way on the machines measured (docs/performance.md), more than a small
// call. So a reader polls for the next bytes for a short window before it sleeps. When a
// poll comes up empty, the reader sleeps through the next waits at once: 1, then 3, 7, ... up
// to 63 of them, counting only waits that ended within the window (a slow call or an idle
// connection never brings polling back); a poll that finds its bytes halves that backoff.
// A reader that keeps finding its bytes polls every time; one on a busy machine, or waiting
// for slow calls, rarely polls.
// No I/O here: the reader polls and sleeps, and reports how it went.
// Not thread-safe: one policy per reader.
#ifndef LABHOST_PROTOCOL_BUSY_POLL_H
#define LABHOST_PROTOCOL_BUSY_POLL_H

#include <algorithm>
#include <chrono>

namespace labhost::protocol {

class busy_poll_policy {
 public:
  /// `window` zero, or a process that may run on one CPU only, never polls: there, polling
  /// would only keep the other end from running.
  explicit busy_poll_policy(std::chrono::microseconds window) noexcept;

  /// How long to poll before sleeping, now: the window, or zero.
  std::chrono::microseconds window_now() const noexcept {
    return skip_ == 0 ? window_ : std::chrono::microseconds::zero();
  }
  /// The poll found the bytes.
  void found_by_polling() noexcept { backoff_ /= 2; }
  /// The reader slept `waited` until the bytes came, after polling in vain (`polled`) or at once.
  void slept(bool polled, std::chrono::steady_clock::duration waited) noexcept {
    if (polled) {
      backoff_ = std::min(2 * backoff_ + 1, max_backoff);
      skip_ = backoff_;
    } else if (skip_ > 0 && waited <= window_) {
      --skip_;
    }
  }

 private:
  static constexpr unsigned max_backoff = 63;
  std::chrono::microseconds window_;
  unsigned backoff_ = 0;  // waits to sleep through after the next vain poll
  unsigned skip_ = 0;     // quick waits still to sleep through before polling again
};

/// The CPUs this process may run on (sched_getaffinity); 1 when that cannot be read.
unsigned usable_cpus() noexcept;

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_BUSY_POLL_H
