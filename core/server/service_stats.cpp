#include "service_stats.h"

#include <algorithm>

namespace labhost::server {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
}  // namespace

void service_stats::call_finished(std::chrono::steady_clock::duration took, const std::optional<errc>& failure,
                                  std::size_t bytes_in, std::size_t bytes_out) noexcept {
  calls_.fetch_add(1, relaxed);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
  duration_ns_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, ns)), relaxed);
  const double seconds = static_cast<double>(ns) / 1e9;
  const auto& bounds = protocol::call_duration_bounds_s;
  const auto bucket = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  buckets_[static_cast<std::size_t>(bucket)].fetch_add(1, relaxed);
  if (failure) errors_[std::min<std::size_t>(static_cast<std::size_t>(*failure), error_codes - 1)].fetch_add(1, relaxed);
  bytes_in_.fetch_add(bytes_in, relaxed);
  bytes_out_.fetch_add(bytes_out, relaxed);
}

void service_stats::lock_waited(std::chrono::steady_clock::duration waited) noexcept {
  lock_waits_.fetch_add(1, relaxed);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count();
  lock_wait_ns_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, ns)), relaxed);
}

value service_stats::snapshot() const {
  auto count = [](const std::atomic<std::uint64_t>& a) { return static_cast<std::int64_t>(a.load(relaxed)); };
  map errors;
  for (std::size_t code = 0; code < error_codes; ++code)
    if (auto n = count(errors_[code]); n > 0) errors.emplace_back(std::string(errc_name(static_cast<errc>(code))), n);
  list buckets;
  for (const auto& b : buckets_) buckets.emplace_back(count(b));
  return map{{"calls", count(calls_)},
             {"errors", std::move(errors)},
             {"duration_s_sum", static_cast<double>(duration_ns_.load(relaxed)) / 1e9},
             {"duration_buckets", std::move(buckets)},
             {"bytes_in", count(bytes_in_)},
             {"bytes_out", count(bytes_out_)},
             {"lock_waits", count(lock_waits_)},
             {"lock_wait_s_sum", static_cast<double>(lock_wait_ns_.load(relaxed)) / 1e9},
             {"events_delivered", count(events_delivered_)},
             {"events_dropped", count(events_dropped_)}};
}

void recent_errors::add(entry e) {
  std::lock_guard lock(mutex_);
  entries_.push_back(std::move(e));
  if (entries_.size() > kept) entries_.pop_front();
}

value recent_errors::snapshot() const {
  std::lock_guard lock(mutex_);
  list out;
  for (const auto& e : entries_)
    out.push_back(map{{"time", e.time},
                      {"service", e.service},
                      {"method", e.method},
                      {"client", e.client},
                      {"error", std::string(e.failure.name())},
                      {"message", e.failure.message}});
  return out;
}

}  // namespace labhost::server
