#include "handshake.h"

#include <boost/asio/steady_timer.hpp>
#include <memory>

#include "../logging/log.h"
#include "../protocol/auth.h"
#include "connection.h"
#include "daemon_state.h"

namespace labhost::server {

using protocol::message_type;

void handshake::on_hello(std::uint32_t request_id, const value& payload) {
  auto hello = protocol::parse_hello(payload);
  if (!hello) return owner_.send_error(request_id, hello.err());
  if (hello->min_version > protocol::protocol_version || hello->max_version < protocol::oldest_protocol_version ||
      hello->min_version > hello->max_version) {
    owner_.send_error(request_id, {errc::unsupported_version,
                                   "client speaks versions " + std::to_string(hello->min_version) + " to " +
                                       std::to_string(hello->max_version) + ", this daemon speaks " +
                                       std::to_string(protocol::oldest_protocol_version) + " to " +
                                       std::to_string(protocol::protocol_version)});
    return owner_.close_after_flush();
  }
  if (owner_.current_session() || pending_hello_)
    return owner_.send_error(request_id, {errc::bad_message, "this connection already said hello"});
  if (state_.auth_secret.empty()) return open_session(request_id, *hello);
  // The daemon requires a secret: prove ours, and ask for the client's proof.
  if (hello->client_nonce.size() != protocol::nonce_size) {
    owner_.send_error(request_id, {errc::auth_failed, "daemon " + state_.config.name +
                                                          " requires a secret (LABHOST_SECRET or LABHOST_SECRET_FILE)"});
    return owner_.close_after_flush();
  }
  pending_hello_ = std::move(*hello);
  server_nonce_ = protocol::random_nonce();
  protocol::challenge_message challenge{
      server_nonce_, protocol::server_proof(state_.auth_secret, pending_hello_->client_nonce, server_nonce_)};
  owner_.send_value(message_type::challenge, request_id, protocol::to_value(challenge));
}

void handshake::on_authenticate(std::uint32_t request_id, const value& payload) {
  if (!pending_hello_)
    return owner_.send_error(request_id, {errc::bad_message, "authenticate answers a challenge; send hello first"});
  auto answer = protocol::parse_authenticate(payload);
  auto expected = protocol::client_proof(state_.auth_secret, server_nonce_, pending_hello_->client_nonce);
  if (answer && protocol::proofs_equal(answer->client_proof, expected)) {
    auto hello = std::move(*pending_hello_);
    pending_hello_.reset();
    return open_session(request_id, hello);
  }
  LABHOST_LOG(warning) << "authentication failed for " << pending_hello_->client_name << " from " << owner_.peer();
  pending_hello_.reset();
  // A short delay makes guessing slow; the timer keeps the thread free meanwhile.
  auto delay = std::make_shared<boost::asio::steady_timer>(state_.io, std::chrono::milliseconds(500));
  delay->async_wait([self = owner_.shared_from_this(), delay, request_id](boost::system::error_code) {
    self->guarded(request_id, [&] {
      self->send_error(request_id, {errc::auth_failed, "wrong secret"});
      self->close_after_flush();
    });
  });
}

void handshake::open_session(std::uint32_t request_id, const protocol::hello_message& hello) {
  protocol::welcome_message welcome;
  std::shared_ptr<session> opened;
  if (!hello.session_token.empty()) {
    opened = state_.sessions.find(hello.session_token);
    if (opened) {
      opened->touch();
      welcome.resumed = true;
      LABHOST_LOG(debug) << "session of " << opened->info().client_name << " resumed from " << owner_.peer();
    }
  }
  if (!opened) {
    opened = state_.sessions.open({{}, hello.client_name, hello.pid, owner_.peer(), owner_.peer_certificate()});
    LABHOST_LOG(debug) << "session opened by " << hello.client_name << " (pid " << hello.pid << ") from "
                       << owner_.peer();
  }
  // The highest version both speak.
  welcome.version = std::min(hello.max_version, protocol::protocol_version);
  welcome.session_token = opened->token();
  welcome.daemon = state_.config.name;
  welcome.server_version = LABHOST_VERSION;
  welcome.lease_ms = state_.config.lease.count();
  owner_.session_opened(opened, welcome.version);
  owner_.send_value(message_type::welcome, request_id, protocol::to_value(welcome));
  opened->deliver_events();  // a resumed session's subscriptions go on, after the welcome
}

}  // namespace labhost::server
