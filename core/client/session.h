// session.h: the client's session with one daemon, the top layer under the public API
// (docs/clients.md): the handshake (hello, and the secret's challenge), reconnecting and
// resuming after a break, heartbeats, and the rules of when a request is sent again.
// Asynchronous work (calls whose reply nobody waits for in a call, subscriptions' events)
// is served by a pump thread that reads while there is any, and reconnects after a break.
// Thread-safety: every member may be called from any thread. Not movable: the heartbeat
// and pump threads hold `this`.
#ifndef LABHOST_CLIENT_SESSION_H
#define LABHOST_CLIENT_SESSION_H

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../protocol/messages.h"
#include "labhost/client.h"
#include "multiplexer.h"
#include "transport.h"

namespace labhost::client_detail {

/// `options` with what was left empty filled in: the client name, and unless
/// options.use_environment is off, the secret and TLS files from the environment.
/// Throws remote_error(auth_failed) for a $LABHOST_SECRET_FILE that holds no secret.
client_options with_defaults(client_options options);

/// An event frame's message (its value read in place, or decoded).
result<protocol::event_message> event_of(reply_frame frame);

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
  /// `timeout`, when given, replaces the options' for this request.
  reply_frame request(protocol::message_type type, const value& payload,
                      std::chrono::milliseconds extra_wait = std::chrono::milliseconds::zero(), bool busy_poll = true,
                      std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  /// Sends a request whose reply (or failure: the link broke, the options' timeout passed)
  /// goes to `done`, on the pump thread. Throws remote_error when it cannot be sent.
  using completion = std::function<void(result<reply_frame>)>;
  void request_async(protocol::message_type type, const value& payload, completion done);
  /// Sends a request that wants no reply (a oneway call). Throws remote_error when it cannot
  /// be sent; its failure, if the daemon reports one, goes to the options' on_oneway_error.
  void send_oneway(protocol::message_type type, const value& payload);

  /// Where the events of subscription `id` go, on the pump thread; an error ends it (the
  /// client closed, the daemon lost the session). Events that came before this are handed
  /// over first.
  using event_handler = std::function<void(result<protocol::event_message>)>;
  /// Where the subscription's array values may be read into (multiplexer::on_event_buffer).
  using buffer_source = std::function<std::vector<std::uint8_t>(std::size_t size)>;
  void add_subscription(std::uint32_t id, event_handler handler, buffer_source buffers = nullptr);
  void remove_subscription(std::uint32_t id);

  /// The protocol version of the session (welcome).
  std::int64_t version() const;
  /// Oneway calls the daemon reported as failed.
  std::uint64_t oneway_failures() const noexcept { return oneway_failures_.load(); }

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
  /// Sends a request, reconnecting first when rules 3 to 5 say so.
  multiplexer::ticket send_request(protocol::message_type type, const value& payload, bool expect_reply);
  /// An event frame from the reader: to its subscription's handler, or kept until one comes.
  void route_event(std::uint32_t id, reply_frame frame);
  /// Ends every subscription with `e` (the session is gone).
  void fail_subscriptions(const error& e);
  /// Starts the pump thread unless it runs. REQUIRES: async_mutex_ held.
  void ensure_pump_locked();
  void pump_loop();
  /// Completes the asynchronous requests that got their reply or timed out.
  void complete_async();

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

  struct async_request {
    multiplexer::ticket ticket;
    std::optional<std::chrono::steady_clock::time_point> deadline;
    completion done;
  };
  mutable std::mutex async_mutex_;  // guards everything below; with async_wake_
  std::condition_variable async_wake_;
  std::vector<async_request> async_requests_;
  struct subscriber {
    event_handler handler;
    buffer_source buffers;  // may be empty: each event's array is then allocated
  };
  std::map<std::uint32_t, subscriber> subscriptions_;
  std::map<std::uint32_t, std::vector<reply_frame>> unclaimed_events_;  // before their handler
  std::size_t unclaimed_count_ = 0;
  std::size_t unclaimed_bytes_ = 0;
  std::set<std::uint32_t> retired_subscriptions_;  // unsubscribed: their late events are dropped
  bool pump_running_ = false;
  std::thread pump_thread_;
  std::atomic<std::uint64_t> oneway_failures_{0};
};

}  // namespace labhost::client_detail

#endif  // LABHOST_CLIENT_SESSION_H
