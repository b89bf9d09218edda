// labhost/client.h: the C++ client library.
//
// A labhost::client is one connection, and one session, to one daemon. It is thread-safe:
// several threads may call at once, and their requests are in flight together on the one
// connection, matched by request id. A service_proxy is a client plus a service name.
//
//   auto laser = labhost::service_proxy::connect("lab://127.0.0.1:7701/laser");
//   laser.call("set_wavelength", 1550.5);
//   double nm = laser.call("wavelength").as_float();
//
// Failures throw labhost::remote_error carrying the typed error (connection_lost when the
// daemon goes away, bad_address for an address that does not parse).
//
// Beyond calls that wait: call_async() (a std::future, or a callback), call_oneway() (no
// reply awaited), and subscribe() to a topic's events (an iterator-like next(), or a
// callback). Callbacks run on a thread of the client library: they must not block on this
// client (use call_async there) nor destroy it.
#ifndef LABHOST_CLIENT_H
#define LABHOST_CLIENT_H

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "labhost/description.h"
#include "labhost/errors.h"
#include "labhost/limits.h"
#include "labhost/value.h"

namespace labhost {

struct client_options {
  std::string client_name;                    // empty: "user@host"
  std::chrono::milliseconds timeout{0};       // per request; 0 waits as long as it takes
  std::chrono::milliseconds connect_timeout{5000};
  std::uint32_t max_frame_bytes = limits::default_max_frame_bytes;  // larger replies are refused (bad_frame)
  /// The shared secret for daemons that require one (host.json auth.secret_file). Empty:
  /// $LABHOST_SECRET, else the first line of the file $LABHOST_SECRET_FILE, else none.
  std::string secret;
  /// TLS, for daemons that serve it (host.json "tls"): the CA file (PEM) that signed the
  /// daemon's certificate, which must also name the host connected to. Empty: $LABHOST_TLS_CA,
  /// else plain TCP.
  std::string tls_ca_file;
  /// This client's certificate and key (PEM), for daemons that verify clients (mutual TLS).
  /// Empty: $LABHOST_TLS_CERT and $LABHOST_TLS_KEY, else none.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// Take the secret and the TLS files from the environment ($LABHOST_SECRET..., $LABHOST_TLS_...)
  /// when they are not given. Off for labhost's own connections, which follow host.json only.
  bool use_environment = true;
  /// Send heartbeats (a ping every third of the daemon's lease) while the client is open,
  /// so that an idle session, and its locks, stay alive.
  bool heartbeats = true;
  /// After the connection breaks, reconnect and resume the session (with its locks) from
  /// the heartbeat thread and before the next request. A request whose connection broke
  /// while it was in flight still fails with connection_lost: it may have run.
  bool reconnect = true;
  /// Waiting for a reply, poll the socket this long before sleeping, as long as replies keep
  /// coming that soon: a quick call then returns without waiting for this thread to be woken
  /// (docs/performance.md). A reply slower than this turns polling off until one is quick
  /// again, so slow calls cost no CPU. Zero, or a process limited to one CPU: never poll.
  /// Plain TCP only; heartbeats never poll.
  std::chrono::microseconds busy_poll = limits::default_busy_poll;
  /// Called (on a client thread) with the error of a oneway call that failed in the daemon.
  /// Unset: such errors are only counted (client::oneway_failures()).
  std::function<void(const error&)> on_oneway_error;
};

/// One value a service published on a topic, as a subscription receives it.
struct event {
  std::uint32_t subscription = 0;
  std::int64_t seq = 0;      // its number on its topic: a gap is events this subscriber did not get
  std::int64_t dropped = 0;  // events dropped for this subscriber since the previous one it got
  double time = 0;           // when the driver published it, Unix time in seconds
  value data;
};

struct subscribe_options {
  std::size_t queue = 16;  // events kept for this subscriber, by the daemon and by the client
  double max_rate = 0;     // at most this many events per second; 0: no limit
};

class client;

/// A subscription to a topic: events in order, from next(), or to a callback. Ends when
/// destroyed (unsubscribing), on unsubscribe(), or when its session ends (next() then
/// throws connection_lost). Thread-safety: next() from one thread at a time; the rest from
/// any thread.
class subscription {
 public:
  ~subscription();
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;

  /// The next event, waiting up to `timeout` for it (nothing when none came). Throws
  /// remote_error when the subscription ended, once the events before the end are taken.
  std::optional<event> next(std::chrono::milliseconds timeout);
  /// Stops the events. Idempotent; throws remote_error only when the daemon cannot be told.
  void unsubscribe();
  /// Gives an event back once the program is done with it: the memory of its array is used
  /// to read a later event's array into (a few are kept), so that a stream of camera frames
  /// allocates no new memory, and the kernel faults none in, frame after frame.
  void recycle(event&& done);

  std::uint32_t id() const noexcept { return id_; }
  const std::string& topic() const noexcept { return topic_; }
  const std::string& type() const noexcept { return type_; }
  /// Events this subscriber lost: dropped by the daemon (reported in each event) and by this
  /// client's own queue (next() not called fast enough).
  std::uint64_t dropped() const;

  struct state;  // shared with the client's reader
  subscription(std::shared_ptr<client> owner, std::uint32_t id, std::string topic, std::string type,
               std::shared_ptr<state> s);

 private:
  std::shared_ptr<client> owner_;
  std::uint32_t id_;
  std::string topic_;
  std::string type_;
  std::shared_ptr<state> state_;
};

/// One service's lock, as lock() and lock_status() report it.
struct lock_info {
  std::string service;
  bool locked = false;
  bool yours = false;  // held by this client's session
  std::string holder_name;
  std::int64_t holder_pid = 0;
  std::string holder_address;
  double since = 0;  // Unix time, seconds
  std::int64_t lease_left_ms = 0;
};

/// "lab://HOST:PORT/SERVICE", "lab://HOST:PORT", "HOST:PORT/SERVICE" or "HOST:PORT";
/// IPv6 hosts in brackets ("lab://[::1]:7701/laser").
struct service_address {
  std::string host;
  std::uint16_t port = 0;
  std::string service;  // empty when the address names a daemon

  /// Throws remote_error(bad_address) with the reason.
  static service_address parse(std::string_view text);
  std::string to_string() const;
};

class client : public std::enable_shared_from_this<client> {
 public:
  /// Connects and opens a session (hello/welcome). Throws remote_error.
  static std::shared_ptr<client> connect(const std::string& host, std::uint16_t port,
                                         client_options options = {});
  ~client();  // says goodbye and closes
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Calls service.method(args..., kwargs...) and returns its result.
  value call(std::string_view service, std::string_view method, list args = {}, map kwargs = {});
  /// Sends the call and returns at once; the future holds the result, or throws remote_error.
  /// Many may be in flight together. The options' timeout bounds each.
  std::future<value> call_async(std::string_view service, std::string_view method, list args = {}, map kwargs = {});
  /// The same, with the result, or the error, handed to `done` on a client thread.
  void call_async(std::string_view service, std::string_view method, list args, map kwargs,
                  std::function<void(result<value>)> done);
  /// Sends the call and returns without waiting for anything: the daemon sends no result.
  /// Oneway calls of this client to one service run in the order sent, before its later
  /// calls there. A failure in the daemon goes to client_options::on_oneway_error.
  void call_oneway(std::string_view service, std::string_view method, list args = {}, map kwargs = {});
  /// Oneway calls the daemon reported as failed so far.
  std::uint64_t oneway_failures() const noexcept;

  /// Subscribes to a topic of a service (describe lists them). Errors: no_such_topic,
  /// no_such_service, unsupported_version (a daemon of protocol version 1), busy.
  std::unique_ptr<subscription> subscribe(std::string_view service, std::string_view topic,
                                          subscribe_options options = {});
  /// The same, each event handed to `on_event` on a client thread instead of next().
  std::unique_ptr<subscription> subscribe(std::string_view service, std::string_view topic,
                                          std::function<void(const event&)> on_event, subscribe_options options = {});
  /// The protocol version of the session: 2, or 1 with a daemon that speaks no more.
  std::int64_t protocol_version() const;
  daemon_description describe();
  service_description describe(std::string_view service);
  /// The daemon's figures: per service its calls, errors by name, call-duration histogram,
  /// bytes, lock waits and events; the latest errors; open connections and sessions
  /// (`describe` with `stats`, docs/protocol.md). What the status page plots.
  value daemon_stats();
  /// Round trip of one ping.
  std::chrono::microseconds ping();

  /// Locks a service for this session (lockable daemons); waits up to `wait` for a lock
  /// held by another session. Errors: locked, not_lockable, no_such_service.
  lock_info lock(std::string_view service, std::chrono::milliseconds wait = std::chrono::milliseconds(0));
  /// Errors: not_lock_owner.
  void unlock(std::string_view service);
  /// Releases another session's lock (administrators). Errors: not_authorised.
  void force_unlock(std::string_view service, std::string_view admin_secret);
  /// Locks of one service, or of every service when `service` is empty.
  std::vector<lock_info> lock_status(std::string_view service = {});

  /// Reconnects and presents the session token. True when the daemon still had the session
  /// (its locks come back with it); false when a new session had to be opened.
  bool resume();
  /// The daemon's lease: a session silent this long ends.
  std::chrono::milliseconds lease() const noexcept;

  std::string session_token() const;
  std::string daemon_name() const;
  /// Says goodbye and closes; later requests throw connection_lost. Idempotent.
  void close();

  struct impl;
  explicit client(std::unique_ptr<impl> i);

 private:
  friend class subscription;
  std::unique_ptr<impl> impl_;
};

/// A service of a daemon, as an object whose methods are called by name.
class service_proxy {
 public:
  service_proxy(std::shared_ptr<client> c, std::string service)
      : client_(std::move(c)), service_(std::move(service)) {}
  /// Connects to the daemon of a "lab://HOST:PORT/SERVICE" address.
  static service_proxy connect(std::string_view address, client_options options = {});

  template <typename... Args>
  value call(std::string_view method, Args&&... args) {
    return client_->call(service_, method, list{value(std::forward<Args>(args))...});
  }
  value call_with(std::string_view method, list args, map kwargs = {}) {
    return client_->call(service_, method, std::move(args), std::move(kwargs));
  }
  service_description describe() { return client_->describe(service_); }
  lock_info lock(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    return client_->lock(service_, wait);
  }
  void unlock() { client_->unlock(service_); }
  lock_info lock_status() { return client_->lock_status(service_).at(0); }
  std::future<value> call_async(std::string_view method, list args = {}, map kwargs = {}) {
    return client_->call_async(service_, method, std::move(args), std::move(kwargs));
  }
  void call_oneway(std::string_view method, list args = {}, map kwargs = {}) {
    client_->call_oneway(service_, method, std::move(args), std::move(kwargs));
  }
  std::unique_ptr<subscription> subscribe(std::string_view topic, subscribe_options options = {}) {
    return client_->subscribe(service_, topic, options);
  }
  const std::string& name() const noexcept { return service_; }
  client& connection() noexcept { return *client_; }

 private:
  std::shared_ptr<client> client_;
  std::string service_;
};

/// The client name sent when client_options::client_name is empty: "user@host".
std::string default_client_name();

// --- The nameserver.

/// A registered name.
struct name_record {
  std::string name;
  std::string address;  // "lab://HOST:PORT/SERVICE"
  value metadata;       // daemon, driver, description, and the service's own metadata
  std::string owner;    // client name of the registering daemon
};

/// The nameserver to use when none is given: $LABHOST_NS, else "127.0.0.1:7700".
std::string default_nameserver();
/// Names on a nameserver ("HOST:PORT"; empty: the default) starting with `prefix`.
std::vector<name_record> list_names(std::string_view nameserver = {}, std::string_view prefix = {},
                                    client_options options = {});
/// The address a name stands for. Errors: no_such_name.
service_address resolve_name(std::string_view name, std::string_view nameserver = {},
                             client_options options = {});
/// Connects to the service a name stands for.
service_proxy locate(std::string_view name, std::string_view nameserver = {}, client_options options = {});

}  // namespace labhost

#endif  // LABHOST_CLIENT_H
