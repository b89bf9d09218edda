// status_server.h: the HTTP side of `labhost up`'s status page (Boost.Beast): GET / is the
// page, GET /api/status its data (JSON, from the status_collector), GET /metrics the
// Prometheus text. It follows the daemons' rules (docs/security.md): with host.json's "auth"
// it asks for the host's secret (HTTP Basic password, any user name), with "tls" it serves
// HTTPS with the host's certificate (and asks for a client certificate with verify_clients).
// One thread of its own runs the io_context. Thread-safety: construct and destroy from one
// thread; the rest is internal.
#ifndef LABHOST_WEB_STATUS_SERVER_H
#define LABHOST_WEB_STATUS_SERVER_H

#include <memory>
#include <string>

#include "../host/host_config.h"

namespace labhost::web {

class status_collector;

struct server_settings {
  host::endpoint_address listen;
  std::string secret;     // non-empty: requests must carry it (HTTP Basic password)
  host::tls_config tls;   // enabled: HTTPS with the host's certificate
};

/// The page itself (status_page.html, built into the program).
extern const char* const status_page_html;

class status_server {
 public:
  /// Binds and starts serving `data`. Throws std::runtime_error when it cannot listen.
  status_server(server_settings settings, const status_collector& data);
  ~status_server();  // stops and joins the thread
  status_server(const status_server&) = delete;
  status_server& operator=(const status_server&) = delete;

  /// "127.0.0.1:7780" (the real port when 0 was asked for).
  std::string local_address() const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace labhost::web

#endif  // LABHOST_WEB_STATUS_SERVER_H
