// daemon.h: one labhost daemon: a listening socket serving the services of one host.json
// daemon entry over the binary protocol.
//
// Asio async I/O, no thread per connection: `threaded` daemons run a pool of pool_size
// threads on one io_context; `multiplexed` daemons run one thread, so calls run one at a
// time in arrival order. Calls to one service are serialized on that service's strand; a call
// to a free service runs on the thread that read it (no thread hop).
// Thread-safety: stop() may be called from any thread; the rest from the owning thread.
#ifndef LABHOST_SERVER_DAEMON_H
#define LABHOST_SERVER_DAEMON_H

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "../host/host_config.h"

namespace labhost::naming {
class registrar;
class lan_announcer;
}

namespace labhost::server {

class daemon_state;

class daemon {
 public:
  /// Opens every service (a refused plugin or an instrument that did not open leaves that
  /// service unavailable, logged with its reason) and binds the listen address. Throws
  /// std::runtime_error when the address cannot be bound.
  daemon(host::daemon_config config, const std::filesystem::path& plugin_dir);
  ~daemon();
  daemon(const daemon&) = delete;
  daemon& operator=(const daemon&) = delete;

  /// The bound address, "127.0.0.1:7701" (the real port when the config said 0).
  std::string local_address() const;

  /// Serves until stop() or SIGINT/SIGTERM (when handle_signals), then stops gracefully:
  /// no new connections; calls in flight finish (new ones get shutting_down) for up to the
  /// grace period; connections close; drivers close. Blocks the calling thread.
  void run(bool handle_signals = true);

  /// Begins the graceful stop; run() returns when it is done. Thread-safe.
  void stop();

  /// Makes this daemon a nameserver: it serves the built-in "nameserver" service (call
  /// before run()).
  void serve_names();

 private:
  void start_registrar();
  void start_lan_announcer();

  std::shared_ptr<daemon_state> state_;
  std::function<void()> stopping_;  // set by run(); runs on the io_context
  std::unique_ptr<naming::registrar> registrar_;  // while running, when register_with is set
  std::unique_ptr<naming::lan_announcer> lan_announcer_;  // while running, when lan_discovery.announce
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_DAEMON_H
