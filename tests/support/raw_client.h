// raw_client.h: a loopback TCP connection that sends whatever bytes a test wants and reads
// frames back, to play a client (well-behaved or hostile) by hand.
#ifndef LABHOST_TESTS_RAW_CLIENT_H
#define LABHOST_TESTS_RAW_CLIENT_H

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/frame.h"
#include "labhost/value.h"

namespace labhost::testing {

class raw_client {
 public:
  /// Connects to 127.0.0.1:port; a reply that takes over 30 s counts as none (a safety net).
  explicit raw_client(std::uint16_t port);
  ~raw_client();
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  void send(const std::vector<std::uint8_t>& bytes);
  /// The next frame's header and decoded payload; nullopt when the daemon closed.
  std::optional<std::pair<protocol::frame_header, value>> receive();
  /// True when the daemon closed the connection (reads one byte to find out).
  bool closed_by_peer();
  /// Says hello as `client_name`, speaking protocol versions 1 to `max_version` (presenting
  /// `session_token` to resume a session), requires a welcome, and returns its session token.
  std::string hello(const std::string& client_name = "raw@test", std::int64_t max_version = protocol::protocol_version,
                    const std::string& session_token = "");
  /// Drops the connection with a reset, as a network failure would: the daemon keeps the
  /// session for a resume.
  void reset();
  /// This end's port on loopback.
  std::uint16_t local_port() const;
  /// True when a frame from the daemon waits to be read (never waits itself).
  bool reply_waiting() const;

 private:
  bool read_exact(std::uint8_t* data, std::size_t size);
  int fd_;
};

/// Bytes that arrived on the loopback TCP socket bound to `local_port` and connected to
/// `remote_port`, and that its process has not read yet (the kernel's rx_queue, from
/// /proc/net/tcp): a request queued at a daemon that is not reading. Nothing when no such
/// socket exists.
std::optional<std::size_t> unread_bytes(std::uint16_t local_port, std::uint16_t remote_port);

}  // namespace labhost::testing

#endif  // LABHOST_TESTS_RAW_CLIENT_H
