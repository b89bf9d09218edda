// daemon_state.h: what a daemon's connections share: the io_context, the services with their
// strands, counters and the shutdown flag. Internal to core/server.
#ifndef LABHOST_SERVER_DAEMON_STATE_H
#define LABHOST_SERVER_DAEMON_STATE_H

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>

#include "../host/host_config.h"
#include "../service/service.h"
#include "labhost/description.h"

namespace labhost::server {

class connection;

/// A service and the strand that serializes the calls to it.
struct service_slot {
  std::unique_ptr<service::service> svc;
  boost::asio::strand<boost::asio::io_context::executor_type> strand;
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

  /// A fresh unguessable session token (32 hex digits).
  std::string new_session_token();
  daemon_description describe() const;

  // The open connections, so that shutdown can close them all.
  void add(const std::shared_ptr<connection>& c);
  void remove(const connection* c);
  std::size_t connection_count();
  void close_all_connections();

 private:
  std::mutex connections_mutex_;  // guards connections_
  std::map<const connection*, std::weak_ptr<connection>> connections_;
  std::mutex token_mutex_;  // guards random_
  std::random_device random_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_DAEMON_STATE_H
