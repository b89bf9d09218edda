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
#ifndef LABHOST_CLIENT_H
#define LABHOST_CLIENT_H

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "labhost/description.h"
#include "labhost/errors.h"
#include "labhost/value.h"

namespace labhost {

struct client_options {
  std::string client_name;                    // empty: "user@host"
  std::chrono::milliseconds timeout{0};       // per request; 0 waits as long as it takes
  std::chrono::milliseconds connect_timeout{5000};
  std::uint32_t max_frame_bytes = 64u << 20;  // larger replies are refused (bad_frame)
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

class client {
 public:
  /// Connects and opens a session (hello/welcome). Throws remote_error.
  static std::shared_ptr<client> connect(const std::string& host, std::uint16_t port,
                                         client_options options = {});
  ~client();  // says goodbye and closes
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Calls service.method(args..., kwargs...) and returns its result.
  value call(std::string_view service, std::string_view method, list args = {}, map kwargs = {});
  daemon_description describe();
  service_description describe(std::string_view service);
  /// Round trip of one ping.
  std::chrono::microseconds ping();

  const std::string& session_token() const noexcept;
  const std::string& daemon_name() const noexcept;
  /// Says goodbye and closes; later requests throw connection_lost. Idempotent.
  void close();

  struct impl;
  explicit client(std::unique_ptr<impl> i);

 private:
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
  const std::string& name() const noexcept { return service_; }
  client& connection() noexcept { return *client_; }

 private:
  std::shared_ptr<client> client_;
  std::string service_;
};

}  // namespace labhost

#endif  // LABHOST_CLIENT_H
