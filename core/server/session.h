// session.h: one client's session with a daemon, which outlives a broken connection.
//
// A session opens with hello, and ends on goodbye, when its connection closes in an orderly
// way (the client process ended), or when nothing has arrived from it for the daemon's lease
// time (a client that froze or lost power with its TCP connection still open). A connection
// that breaks with an error (reset, timeout) only detaches the session: the client may come
// back within the lease, present the token, and resume it with its locks and subscriptions.
// Thread-safety: every member is safe from any thread (atomics, or mutex_).
#ifndef LABHOST_SERVER_SESSION_H
#define LABHOST_SERVER_SESSION_H

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../service/session_info.h"
#include "subscription.h"

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

  /// Attaches the connection the session now speaks through (on hello or resume), which
  /// speaks protocol `version`. Its subscriptions wait for deliver_events().
  void attach(const std::shared_ptr<connection>& c, const std::string& address, std::int64_t version) {
    std::lock_guard lock(mutex_);
    connection_ = c;
    info_.address = address;
    version_ = version;
  }
  /// Starts (again) writing the subscriptions' events to the attached connection: after the
  /// welcome, so that no event comes before it.
  void deliver_events() {
    std::lock_guard lock(mutex_);
    auto c = connection_.lock();
    for (auto& [id, s] : subscriptions_) s->attach(c);
  }
  /// Forgets `c` if it is still the attached connection; events wait for the next one.
  void detach(const connection* c) {
    std::lock_guard lock(mutex_);
    if (connection_.lock().get() != c) return;
    connection_.reset();
    for (auto& [id, s] : subscriptions_) s->attach(nullptr);
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

  /// The protocol version of its latest hello (docs/protocol.md, "Version negotiation").
  std::int64_t version() const {
    std::lock_guard lock(mutex_);
    return version_;
  }

  // --- Subscriptions (version 2).

  /// A fresh subscription id (1 to 2^32 - 1, not in use), or 0 when the session already holds
  /// `most` subscriptions.
  std::uint32_t next_subscription_id(std::size_t most) {
    std::lock_guard lock(mutex_);
    if (subscriptions_.size() >= most) return 0;
    do {
      if (++last_subscription_id_ == 0) ++last_subscription_id_;
    } while (subscriptions_.count(last_subscription_id_) != 0);
    return last_subscription_id_;
  }
  /// Adds a subscription and starts its delivery when the session has a connection. False when
  /// the session ended meanwhile (the subscription is then stopped).
  bool add_subscription(const std::shared_ptr<subscription>& s) {
    std::lock_guard lock(mutex_);
    if (ended_.load()) {
      s->stop();
      return false;
    }
    subscriptions_[s->config().id] = s;
    s->attach(connection_.lock());
    return true;
  }
  /// Removes and stops one subscription; false when the session has no such id.
  bool remove_subscription(std::uint32_t id) {
    std::shared_ptr<subscription> gone;
    {
      std::lock_guard lock(mutex_);
      auto it = subscriptions_.find(id);
      if (it == subscriptions_.end()) return false;
      gone = std::move(it->second);
      subscriptions_.erase(it);
    }
    gone->stop();
    return true;
  }
  /// Stops every subscription (the session ended).
  void stop_subscriptions() {
    std::map<std::uint32_t, std::shared_ptr<subscription>> gone;
    {
      std::lock_guard lock(mutex_);
      gone.swap(subscriptions_);
    }
    for (auto& [id, s] : gone) s->stop();
  }

  /// Marks the session ended; true only for the call that ended it.
  bool mark_ended() noexcept { return !ended_.exchange(true); }
  bool ended() const noexcept { return ended_.load(); }

 private:
  mutable std::mutex mutex_;  // guards info_.address, connection_, version_, the subscriptions
  service::session_info info_;
  std::weak_ptr<connection> connection_;
  std::int64_t version_ = 1;
  std::map<std::uint32_t, std::shared_ptr<subscription>> subscriptions_;
  std::uint32_t last_subscription_id_ = 0;
  std::atomic<clock::rep> last_seen_{0};
  std::atomic<bool> ended_{false};
  std::atomic<int> calls_in_flight_{0};
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_SESSION_H
