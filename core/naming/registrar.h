// registrar.h: keeps a daemon's services registered with its nameservers.
//
// One thread per nameserver connects, registers every name, and checks the connection twice
// a second; when the nameserver is not reachable (not started yet at boot, restarted, network
// down) it retries with a growing delay (0.2 s doubling to 10 s) and registers everything
// again on the new session. A name held by another live daemon (name_taken) is logged and
// retried. Destroying the registrar says goodbye, which removes the names.
#ifndef LABHOST_NAMING_REGISTRAR_H
#define LABHOST_NAMING_REGISTRAR_H

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../host/host_config.h"
#include "labhost/client.h"
#include "labhost/value.h"

namespace labhost::naming {

struct registration {
  std::string name;
  std::string address;  // lab://HOST:PORT/SERVICE
  value metadata = map{};
};

/// Options for labhost's own connections to the daemons and nameservers of a host (the
/// registrar, `labhost ps`): the host's secret, and with TLS the host's own certificate as
/// client certificate; never the environment, since host.json alone says how to reach them.
/// They never busy-poll: nothing waits on them.
client_options host_connection_options(std::string client_name, std::string secret, const host::tls_config& tls);

class registrar {
 public:
  /// `connection`: how to reach the nameservers (client name, secret, TLS files); the
  /// registrar sets its own timeouts and turns off heartbeats and reconnection.
  registrar(std::vector<host::endpoint_address> nameservers, std::vector<registration> names,
            client_options connection);
  ~registrar();
  registrar(const registrar&) = delete;
  registrar& operator=(const registrar&) = delete;

 private:
  void keep_registered(const host::endpoint_address& nameserver);
  /// Waits up to `period`; false when stopping.
  bool pause(std::chrono::milliseconds period);

  std::vector<registration> names_;
  client_options connection_;
  std::mutex mutex_;  // guards stopping_
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace labhost::naming

#endif  // LABHOST_NAMING_REGISTRAR_H
