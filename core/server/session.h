// session.h: one client's session with a daemon, which outlives a broken connection.
//
// A session opens with hello, and ends on goodbye, when its connection closes in an orderly
// way (the client process ended), or when nothing has arrived from it for the daemon's lease
// time (a client that froze or lost power with its TCP connection still open). A connection
// that breaks with an error (reset, timeout) only detaches the session: the client may come
// back within the lease, present the token, and resume it with its locks.
// Thread-safety: every member is safe from any thread (atomics, or mutex_).
#ifndef LABHOST_SERVER_SESSION_H
#define LABHOST_SERVER_SESSION_H

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "../service/session_info.h"

namespace labhost::server {

class connection;

class session {
 public:
  using clock = std::chrono::steady_clock;

  explicit session(service::session_info info) : info_(std::move(info)) { touch(); }

  /// A sign of life: any frame from the client.
  void touch() noexcept {
    last_seen_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }
  clock::time_point last_seen() const noexcept {
    return clock::time_point(clock::duration(last_seen_.load(std::memory_order_relaxed)));
  }

  service::session_info info() const {
    std::lock_guard lock(mutex_);
    return info_;
  }
  const std::string& token() const noexcept { return info_.token; }  // never changes

  /// Attaches the connection the session now speaks through (on hello or resume).
  void attach(const std::shared_ptr<connection>& c, const std::string& address) {
    std::lock_guard lock(mutex_);
    connection_ = c;
    info_.address = address;
  }
  /// Forgets `c` if it is still the attached connection.
  void detach(const connection* c) {
    std::lock_guard lock(mutex_);
    if (connection_.lock().get() == c) connection_.reset();
  }
  std::shared_ptr<connection> attached() const {
    std::lock_guard lock(mutex_);
    return connection_.lock();
  }

  void call_started() noexcept { calls_in_flight_.fetch_add(1); }
  void call_finished() noexcept {
    calls_in_flight_.fetch_sub(1);
    touch();  // the reply is a sign of life too: the lease restarts from here
  }
  bool has_calls_in_flight() const noexcept { return calls_in_flight_.load() > 0; }
  unsigned calls_in_flight() const noexcept { return static_cast<unsigned>(calls_in_flight_.load()); }

  /// Marks the session ended; true only for the call that ended it.
  bool mark_ended() noexcept { return !ended_.exchange(true); }
  bool ended() const noexcept { return ended_.load(); }

 private:
  mutable std::mutex mutex_;  // guards info_.address, connection_
  service::session_info info_;
  std::weak_ptr<connection> connection_;
  std::atomic<clock::rep> last_seen_{0};
  std::atomic<bool> ended_{false};
  std::atomic<int> calls_in_flight_{0};
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_SESSION_H
