// transport.h: one connected socket to a daemon, with TLS over it when the client uses TLS:
// the bottom layer of the client library (docs/clients.md).
//
// Writes whole frames, reads exactly N bytes with an optional deadline, polls the socket
// before sleeping on it (protocol/busy_poll.h), and tells whether an idle link was closed by
// the daemon. Plain TCP reads go through a small buffer, so that one recv brings a whole
// small reply; large reads go straight into place.
// Thread-safety: send() by one writer at a time (the multiplexer's write mutex); reads and
// peer_closed() by one reader at a time; shutdown() from any thread.
#ifndef LABHOST_CLIENT_TRANSPORT_H
#define LABHOST_CLIENT_TRANSPORT_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../protocol/busy_poll.h"
#include "labhost/errors.h"
#include "tls_link.h"

namespace labhost::client_detail {

struct transport_settings {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::microseconds busy_poll{0};  // plain TCP only
  tls_settings tls;                         // used when tls.ca_file is set
};

class transport {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  transport() = default;
  transport(transport&& other) noexcept { *this = std::move(other); }
  transport& operator=(transport&& other) noexcept;
  ~transport() { close(); }

  /// Connects to host:port (each address it resolves to in turn, each within the connect
  /// timeout), then shakes hands over TLS when settings.tls names a CA file, by `deadline`.
  /// Throws remote_error: connection_lost, timeout, auth_failed (TLS certificates).
  static transport connect(const std::string& host, std::uint16_t port, const transport_settings& settings,
                           time_point deadline);

  /// What a send did: the failure, and whether any byte of the frame had gone out.
  struct send_outcome {
    std::optional<error> failure;  // connection_lost
    bool sent_any = false;
  };
  send_outcome send(const std::vector<std::uint8_t>& frame);

  /// Reads exactly `size` bytes; waits at most until `deadline` when it is set (then
  /// timeout). With `busy_poll`, polls before sleeping as the policy says. `read_so_far`
  /// counts the bytes read, also on failure.
  std::optional<error> read_exact(std::uint8_t* data, std::size_t size, std::optional<time_point> deadline,
                                  bool busy_poll, std::size_t* read_so_far = nullptr);

  /// True when nothing is buffered and the daemon has closed the connection (EOF waits to be
  /// read); never waits. The reader's, or anyone's while nobody reads.
  bool peer_closed();

  /// Makes the kernel give up the connection when the daemon's host stops acknowledging for
  /// `lease` (its power cut, the network broke): bytes unacknowledged that long
  /// (TCP_USER_TIMEOUT), or no answer to keepalive probes on an idle link. A daemon that is
  /// only busy (a long call) still acknowledges: its kernel answers. At least a second.
  void bound_silence(std::chrono::milliseconds lease) noexcept;

  /// Stops the link: `abortive` as a network failure would (the daemon sees a reset, and
  /// keeps the session for a resume; a blocked reader wakes), else an orderly close (the
  /// daemon ends the session). The socket stays open until close().
  void shutdown(bool abortive);
  /// TLS: tells the daemon this side is done (close_notify). Best effort.
  void close_notify();
  void close();

  bool uses_tls() const noexcept { return tls_ != nullptr; }

 private:
  static constexpr std::size_t read_buffer_size = 64 * 1024;

  /// Polls the socket for `window`: what recv returned (bytes, 0 at the end, or -1 with
  /// errno), or nothing when no byte came in time.
  std::optional<long> receive_polling(std::uint8_t* into, std::size_t room, std::chrono::microseconds window);
  /// Moves up to `size` buffered bytes to `data`; how many.
  std::size_t take_buffered(std::uint8_t* data, std::size_t size);

  int fd_ = -1;
  std::unique_ptr<tls_link> tls_;  // torn down before fd_ is closed
  protocol::busy_poll_policy policy_{std::chrono::microseconds::zero()};  // the reader's
  // Plain TCP: bytes received ahead of what has been asked for (the reader's only).
  std::unique_ptr<std::uint8_t[]> read_buffer_;
  std::size_t buffered_begin_ = 0;
  std::size_t buffered_end_ = 0;
};

}  // namespace labhost::client_detail

#endif  // LABHOST_CLIENT_TRANSPORT_H
