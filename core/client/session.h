// session.h: the client's session with one daemon, the top layer under the public API
// (docs/clients.md): the handshake (hello, and the secret's challenge), reconnecting and
// resuming after a break, heartbeats, and the rules of when a request is sent again.
// Thread-safety: every member may be called from any thread. Not movable: the heartbeat
// thread holds `this`.
#ifndef LABHOST_CLIENT_SESSION_H
#define LABHOST_CLIENT_SESSION_H

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "../protocol/messages.h"
#include "labhost/client.h"
#include "multiplexer.h"
#include "transport.h"

namespace labhost::client_detail {

/// `options` with what was left empty filled in: the client name, and unless
/// options.use_environment is off, the secret and TLS files from the environment.
/// Throws remote_error(auth_failed) for a $LABHOST_SECRET_FILE that holds no secret.
client_options with_defaults(client_options options);

/// A reply's payload as a value; an error reply, or another type than `expected`, throws.
value payload_of(reply_frame reply, protocol::message_type expected);

class session {
 public:
  /// Connects, says hello and opens a session; starts the heartbeats. Throws remote_error.
  session(std::string host, std::uint16_t port, client_options options);
  ~session();  // closes
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  /// Sends one request and waits for its reply, for the options' timeout plus `extra_wait`
  /// (a lock's wait). Reconnects first when the link broke (rule 3), and sends again a
  /// request of which no byte went out (rule 4). Throws remote_error.
  reply_frame request(protocol::message_type type, const value& payload,
                      std::chrono::milliseconds extra_wait = std::chrono::milliseconds::zero(), bool busy_poll = true);

  /// Drops the link the way a network failure would, reconnects and presents the token,
  /// whatever broke the link before. True when the daemon still had the session.
  bool resume();
  /// Says goodbye (the daemon ends the session) and closes; later requests fail with
  /// connection_lost. Idempotent.
  void close();

  std::string token() const;
  std::string daemon_name() const;
  std::chrono::milliseconds lease() const noexcept { return std::chrono::milliseconds(lease_ms_.load()); }

 private:
  /// A new link that has said hello (presenting `token` when not empty), and the welcome.
  std::pair<transport, protocol::welcome_message> open_link(const std::string& token);
  /// Replaces a broken link by a new one that resumes the session; unless `on_demand`, only
  /// after a break that rule 3 allows to mend. True when the session was resumed.
  bool reconnect(bool on_demand);
  /// Rule 3: not after close(), nor after a refusal that a new connection would repeat.
  bool may_reconnect(const error& e) const noexcept;
  void heartbeat_loop();
  void stop_heartbeats();

  const std::string host_;
  const std::uint16_t port_;
  const client_options options_;
  multiplexer mux_;
  std::mutex connect_mutex_;  // one reconnect, or close, at a time
  std::atomic<bool> closing_{false};
  mutable std::mutex welcome_mutex_;  // guards welcome_
  protocol::welcome_message welcome_;
  std::atomic<std::int64_t> lease_ms_{0};

  std::mutex heartbeat_mutex_;  // guards heartbeats_stopped_; with heartbeat_wake_
  std::condition_variable heartbeat_wake_;
  bool heartbeats_stopped_ = false;
  std::thread heartbeat_thread_;
};

}  // namespace labhost::client_detail

#endif  // LABHOST_CLIENT_SESSION_H
