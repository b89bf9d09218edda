// daemon_state.h: what a daemon's connections share: the io_context, the services with their
// strands and lock lines, the session table, the connection registry, counters and the
// shutdown flag; and what ties them together (ending a session, handing a lock on).
// Internal to core/server.
#ifndef LABHOST_SERVER_DAEMON_STATE_H
#define LABHOST_SERVER_DAEMON_STATE_H

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "../host/host_config.h"
#include "../naming/name_registry.h"
#include "../protocol/messages.h"
#include "../service/service.h"
#include "connection_registry.h"
#include "journal.h"
#include "service_stats.h"
#include "labhost/description.h"
#include "session.h"
#include "session_table.h"

namespace labhost::server {

class connection;

/// A lock request waiting for a held lock to come free (lock with wait_ms > 0).
struct lock_waiter {
  std::weak_ptr<connection> reply_to;
  std::shared_ptr<session> who;
  std::uint32_t request_id = 0;
  boost::asio::steady_timer timer;
  bool done = false;  // answered (granted or timed out); guarded by service_slot::waiters_mutex
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();  // for the lock-wait figures

  lock_waiter(boost::asio::io_context& io, std::weak_ptr<connection> c, std::shared_ptr<session> s,
              std::uint32_t id)
      : reply_to(std::move(c)), who(std::move(s)), request_id(id), timer(io) {}
};

/// A service, the strand that serializes the calls to it, and its lock's waiting line.
struct service_slot {
  service_slot(std::unique_ptr<service::service> s,
               boost::asio::strand<boost::asio::io_context::executor_type> st)
      : svc(std::move(s)), strand(std::move(st)) {}

  std::unique_ptr<service::service> svc;
  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  std::atomic<int> calls_pending{0};  // accepted, not finished: the running call and those queued
  service_stats stats;                // calls, errors, durations, bytes, lock waits, events
  std::mutex waiters_mutex;  // guards waiters and each waiter's done
  std::deque<std::shared_ptr<lock_waiter>> waiters;  // first come, first served
};

class daemon_state : public std::enable_shared_from_this<daemon_state> {
 public:
  explicit daemon_state(host::daemon_config config);

  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor{io};
  const host::daemon_config config;
  // Filled before the first connection, read-only afterwards: no lock needed.
  std::map<std::string, std::unique_ptr<service_slot>, std::less<>> services;

  std::atomic<bool> shutting_down{false};
  std::atomic<int> calls_in_flight{0};

  daemon_description describe() const;
  /// One service's description, with its methods and the calls pending on it.
  service_description describe(const service_slot& slot) const;
  service_description nameserver_description(bool with_methods) const;
  service_slot* find_service(std::string_view name);

  // --- Sessions.
  session_table sessions;
  /// Ends a session: its locks are released (and handed to waiters), its session instances
  /// closed, its connection (if still attached) closed. Idempotent. Thread-safe.
  void end_session(const std::shared_ptr<session>& s, std::string_view why);
  /// Ends every session silent for longer than the lease; run periodically.
  void expire_sessions();

  // --- Locks.
  protocol::lock_report lock_report_for(service_slot& slot, const std::string& asking_token);
  /// Hands a free lock to the first waiter still waiting. Thread-safe.
  void grant_waiters(service_slot& slot);
  /// Force unlock needs this secret (host.json admin_secret_file); empty disables it.
  std::string admin_secret;
  /// Clients must prove they know this secret in the handshake (auth.secret_file); empty: no.
  std::string auth_secret;
  std::unique_ptr<boost::asio::ssl::context> tls_context;  // set when the daemon serves TLS
  decode_limits value_limits;  // applied to every payload from clients
  /// The threads running io; set by daemon::run() before the first connection.
  class worker_pool* pool = nullptr;
  /// Set when this daemon is a nameserver: it then serves the built-in "nameserver" service.
  std::shared_ptr<naming::name_registry> names;

  // The open connections, so that shutdown can close them all.
  connection_registry connections;

  /// Who locked and called what (host.json "journal"); set before the first connection.
  std::unique_ptr<journal> audit;
  /// The latest errors answered to calls, for the status page.
  recent_errors errors;
  /// Figures for `describe` with stats: per service, the recent errors, connections, sessions.
  value stats() const;
  /// Records `action` of `who` in the journal (when it is on), with the time now.
  void journal_action(const service::session_info& who, std::string action, std::string service, std::string method,
                      value arguments, std::string outcome);
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_DAEMON_STATE_H
