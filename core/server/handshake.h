// handshake.h: how a connection opens its session: hello, and on a daemon that requires the
// shared secret, the challenge and the client's authenticate (docs/protocol.md, security.md).
// A hello with a live session's token resumes that session, with its locks.
// Thread-safety: the read chain of its connection only.
#ifndef LABHOST_SERVER_HANDSHAKE_H
#define LABHOST_SERVER_HANDSHAKE_H

#include <cstdint>
#include <optional>
#include <vector>

#include "../protocol/messages.h"
#include "labhost/value.h"

namespace labhost::server {

class connection;
class daemon_state;

class handshake {
 public:
  handshake(connection& owner, daemon_state& state) : owner_(owner), state_(state) {}

  void on_hello(std::uint32_t request_id, const value& payload);
  void on_authenticate(std::uint32_t request_id, const value& payload);

 private:
  /// Opens or resumes the session of a hello that passed authentication; sends welcome.
  void open_session(std::uint32_t request_id, const protocol::hello_message& hello);

  connection& owner_;
  daemon_state& state_;
  // Between hello and authenticate, on a daemon that requires a secret.
  std::optional<protocol::hello_message> pending_hello_;
  std::vector<std::uint8_t> server_nonce_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_HANDSHAKE_H
