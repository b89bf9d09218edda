// service_stats.h: what a daemon counts for each service, and its most recent errors: the
// figures of the status page and of /metrics (docs/operations.md, "The status page").
//
// Counting is on the call path of every call, so it is a handful of relaxed atomic
// increments: no lock, no allocation. snapshot() reads them into a value for `describe` with
// `stats` (docs/protocol.md); the supervisor turns those into rates and plots.
// Thread-safety: every member is safe from any thread.
#ifndef LABHOST_SERVER_SERVICE_STATS_H
#define LABHOST_SERVER_SERVICE_STATS_H

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "../protocol/messages.h"
#include "labhost/errors.h"
#include "labhost/value.h"

namespace labhost::server {


class service_stats {
 public:
  /// One call ran for `took`; `failure` is its error, if any; its request and reply carried
  /// these many payload bytes.
  void call_finished(std::chrono::steady_clock::duration took, const std::optional<errc>& failure,
                     std::size_t bytes_in, std::size_t bytes_out) noexcept;
  /// A lock request waited `waited` for another session's lock (granted or not).
  void lock_waited(std::chrono::steady_clock::duration waited) noexcept;
  void event_delivered() noexcept { events_delivered_.fetch_add(1, std::memory_order_relaxed); }
  void event_dropped() noexcept { events_dropped_.fetch_add(1, std::memory_order_relaxed); }

  /// {calls, errors: {name: count}, duration_s_sum, duration_buckets: [count per bound, +Inf
  /// last], bytes_in, bytes_out, lock_waits, lock_wait_s_sum, events_delivered, events_dropped}.
  value snapshot() const;

 private:
  static constexpr std::size_t error_codes = 128;  // every errc is below this
  std::atomic<std::uint64_t> calls_{0};
  std::array<std::atomic<std::uint64_t>, error_codes> errors_{};
  std::atomic<std::uint64_t> duration_ns_{0};
  std::array<std::atomic<std::uint64_t>, protocol::call_duration_bounds_s.size() + 1> buckets_{};
  std::atomic<std::uint64_t> bytes_in_{0};
  std::atomic<std::uint64_t> bytes_out_{0};
  std::atomic<std::uint64_t> lock_waits_{0};
  std::atomic<std::uint64_t> lock_wait_ns_{0};
  std::atomic<std::uint64_t> events_delivered_{0};
  std::atomic<std::uint64_t> events_dropped_{0};
};

/// The latest errors a daemon answered, for the status page: what failed, for whom.
class recent_errors {
 public:
  struct entry {
    double time = 0;  // Unix seconds
    std::string service;
    std::string method;
    std::string client;
    error failure;
  };
  void add(entry e);
  /// Oldest first.
  value snapshot() const;

 private:
  static constexpr std::size_t kept = 32;
  mutable std::mutex mutex_;  // guards entries_
  std::deque<entry> entries_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_SERVICE_STATS_H
