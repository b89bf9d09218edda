// tls_link.h: TLS on a connected socket, for the client library (OpenSSL directly, no Asio).
//
// The client reads on one thread while others write, but an OpenSSL connection may not be used
// by two threads at once. So the socket is non-blocking, every OpenSSL call runs under mutex_
// and returns at once, and waiting for the socket (poll) happens outside the mutex.
// Thread-safety: write_all() from any thread; read_exact() from one reader at a time.
#ifndef LABHOST_CLIENT_TLS_LINK_H
#define LABHOST_CLIENT_TLS_LINK_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "labhost/errors.h"

typedef struct ssl_st SSL;

namespace labhost::client_detail {

struct tls_settings {
  std::string ca_file;    // the CA that signed the daemon's certificate
  std::string cert_file;  // this client's certificate chain, when the daemon verifies clients
  std::string key_file;   // its private key
};

class tls_link {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// Shakes hands on `fd` (connected; made non-blocking here; not owned) and checks that the
  /// daemon's certificate was signed by ca_file and names `host`. Throws remote_error:
  /// auth_failed for a certificate that does not check out, timeout, connection_lost.
  tls_link(int fd, const std::string& host, const tls_settings& settings, time_point deadline);
  ~tls_link();
  tls_link(const tls_link&) = delete;
  tls_link& operator=(const tls_link&) = delete;

  /// Writes all of [data, data + size); `sent` counts the bytes written so far (also on
  /// failure). Errors: connection_lost.
  std::optional<error> write_all(const std::uint8_t* data, std::size_t size, std::size_t& sent);

  /// Reads exactly `size` bytes, waiting at most until `deadline` when set; `got` counts the
  /// bytes read so far (also on failure). A daemon that refuses this client's certificate gives
  /// auth_failed; a broken link connection_lost.
  std::optional<error> read_exact(std::uint8_t* data, std::size_t size, std::optional<time_point> deadline,
                                  std::size_t& got);

  /// True when the daemon has closed the connection (its close_notify, EOF or a failure is
  /// waiting); never waits. Bytes waiting stay for read_exact. From the reader's thread only,
  /// or when nobody reads.
  bool peer_closed();

  /// Tells the daemon this side is done (TLS close_notify), best effort, without waiting.
  void close_notify();

 private:
  /// Waits until the socket is ready for what OpenSSL wants (`ssl_error`); false on timeout.
  bool wait_for_socket(int ssl_error, std::optional<time_point> deadline);

  int fd_;
  std::mutex mutex_;  // guards every use of ssl_
  SSL* ssl_ = nullptr;
};

}  // namespace labhost::client_detail

#endif  // LABHOST_CLIENT_TLS_LINK_H
