#include "connection.h"

#include <cstring>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "../logging/log.h"
#include "../protocol/auth.h"
#include "../protocol/messages.h"
#include "worker_pool.h"
#include "labhost/value_codec.h"

namespace labhost::server {

namespace asio = boost::asio;
using protocol::message_type;

// The largest frame accepted from a connection without a session (hello, authenticate).
constexpr std::uint32_t pre_handshake_max_payload = 64 * 1024;

namespace {

/// The client closed its side (a FIN; with TLS also one without close_notify,
/// as when a client process is killed), as opposed to a broken link (a reset).
bool is_orderly_close(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

}  // namespace

template <typename Operation, typename Handler>
void connection::start_on_stream(Operation operation, Handler handler) {
  if (tls_)
    operation(*tls_, asio::bind_executor(strand_, std::move(handler)));
  else
    operation(socket_, std::move(handler));
}

connection::connection(asio::ip::tcp::socket socket, std::shared_ptr<daemon_state> state)
    : socket_(std::move(socket)),
      state_(std::move(state)),
      strand_(asio::make_strand(state_->io)),
      handshake_timer_(state_->io) {
  if (state_->tls_context) tls_ = std::make_unique<tls_stream>(socket_, *state_->tls_context);
  boost::system::error_code ec;
  auto remote = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : remote.address().to_string() + ":" + std::to_string(remote.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  socket_.non_blocking(true, ec);  // send() writes directly and must never block
}

connection::~connection() { state_->remove(this); }

void connection::start() {
  state_->add(shared_from_this());
  arm_handshake_timer();
  if (tls_)
    return start_tls([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->do_read_header();
    });
  do_read_header();
}

void connection::arm_handshake_timer() {
  handshake_timer_.expires_after(state_->config.handshake_timeout);
  handshake_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;  // cancelled: the session opened
    if (auto self = weak.lock()) {
      LABHOST_LOG(info) << self->peer_ << ": no handshake within "
                        << self->state_->config.handshake_timeout.count() << " ms; dropped";
      self->send_error(0, {errc::timeout, "no hello within the handshake timeout"});
      self->close_after_flush();
    }
  });
}

void connection::refuse(const error& e) {
  if (tls_) {
    // A TLS client understands only what comes through TLS: shake hands, then refuse.
    arm_handshake_timer();
    return start_tls([weak = weak_from_this(), e] {
      if (auto self = weak.lock()) {
        self->send_error(0, e);
        self->close_after_flush();
      }
    });
  }
  send_error(0, e);
  close_after_flush();
}

void connection::start_tls(std::function<void()> then) {
  asio::dispatch(strand_, [self = shared_from_this(), then = std::move(then)]() mutable {
    std::lock_guard lock(self->mutex_);
    if (self->closed_) return;
    self->after_tls_ = std::move(then);
    self->socket_.async_wait(asio::ip::tcp::socket::wait_read,
                             asio::bind_executor(self->strand_, [self](boost::system::error_code ec) {
                               if (ec) return self->stop();
                               self->on_first_bytes();
                             }));
  });
}

void connection::on_first_bytes() {
  // A labhost frame where a TLS greeting belongs: a client without TLS. Say so in its own
  // terms, so that it shows a clear error rather than a dropped connection.
  std::array<std::uint8_t, 4> first{};
  boost::system::error_code ec;
  std::size_t n = socket_.receive(asio::buffer(first), asio::socket_base::message_peek, ec);
  if (!ec && n == first.size() && first == protocol::frame_magic) {
    LABHOST_LOG(info) << peer_ << ": a connection without TLS; refused (tls_required)";
    auto frame = protocol::encode_frame(
        message_type::error, 0,
        protocol::to_value(error{errc::tls_required, "daemon " + state_->config.name +
                                                         " serves TLS only: connect with the lab's CA file "
                                                         "($LABHOST_TLS_CA, labctl --tls-ca)"}));
    socket_.write_some(asio::buffer(frame), ec);  // best effort: it fits the socket's buffer
    return stop();
  }
  std::lock_guard lock(mutex_);
  if (closed_) return;
  tls_->async_handshake(asio::ssl::stream_base::server,
                        asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code e) {
                          self->on_tls_handshake(e);
                        }));
}

void connection::on_tls_handshake(const boost::system::error_code& ec) {
  if (ec) {
    LABHOST_LOG(warning) << peer_ << ": TLS handshake failed: " << ec.message();
    return stop();
  }
  if (state_->config.tls.verify_clients) {
    if (X509* cert = SSL_get1_peer_certificate(tls_->native_handle())) {
      char subject[256] = {};
      X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
      X509_free(cert);
      LABHOST_LOG(debug) << peer_ << ": TLS client certificate " << subject;
    }
  }
  {
    std::lock_guard lock(mutex_);
    tls_established_ = true;
  }
  auto then = std::move(after_tls_);
  then();
}

void connection::stop() {
  std::lock_guard lock(mutex_);
  close_locked();
  handshake_timer_.cancel();
}

void connection::do_read_header() {
  if (buffered_end_ - buffered_begin_ >= protocol::header_size) {
    // The client sent its next frame already (pipelining). Handle it from the io_context
    // rather than from this stack: the call that may have started this read runs next, and
    // must not hold the frame behind it up.
    auto next = [self = shared_from_this()] { self->on_buffered_header(); };
    if (tls_)
      asio::post(strand_, std::move(next));
    else
      asio::post(state_->io, std::move(next));
    return;
  }
  read_more();
}

void connection::read_more() {
  // Keep what is buffered (part of a header) at the front, and read after it as much as
  // the client has sent: usually a whole small frame, header and payload, in one recv.
  const std::size_t kept = buffered_end_ - buffered_begin_;
  if (!read_buffer_) read_buffer_ = std::make_unique_for_overwrite<std::uint8_t[]>(read_buffer_size);
  std::memmove(read_buffer_.get(), read_buffer_.get() + buffered_begin_, kept);
  buffered_begin_ = 0;
  buffered_end_ = kept;
  std::lock_guard lock(mutex_);
  if (closed_) return;
  auto on_read = [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
    if (ec) {
      self->on_disconnect(is_orderly_close(ec));
      return;
    }
    self->buffered_end_ += n;
    if (self->buffered_end_ < protocol::header_size) return self->read_more();
    self->on_buffered_header();
  };
  auto space = asio::buffer(read_buffer_.get() + kept, read_buffer_size - kept);
  start_on_stream([space](auto& stream, auto handler) { stream.async_read_some(space, std::move(handler)); },
                  std::move(on_read));
}

void connection::on_buffered_header() {
  // Before the handshake only small frames are accepted (hello and authenticate are tiny):
  // a stranger cannot make the daemon hold max_frame_bytes per connection.
  const std::uint32_t limit = session_ ? state_->config.max_frame_bytes
                                       : std::min<std::uint32_t>(state_->config.max_frame_bytes,
                                                                 pre_handshake_max_payload);
  auto parsed = protocol::parse_header(
      std::span<const std::uint8_t, protocol::header_size>(read_buffer_.get() + buffered_begin_, protocol::header_size),
      limit);
  if (!parsed) {
    // The stream cannot be resynchronised after a bad header: say why, then close.
    LABHOST_LOG(warning) << peer_ << ": " << parsed.err().to_string();
    send_error(0, parsed.err());
    close_after_flush();
    return;
  }
  header_ = *parsed;
  buffered_begin_ += protocol::header_size;
  // The length was checked against max_frame_bytes by parse_header: only now allocate.
  payload_.resize(header_.payload_size);
  const std::size_t from_buffer = std::min<std::size_t>(payload_.size(), buffered_end_ - buffered_begin_);
  std::memcpy(payload_.data(), read_buffer_.get() + buffered_begin_, from_buffer);
  buffered_begin_ += from_buffer;
  if (from_buffer == payload_.size()) {
    on_frame(header_);
    return;
  }
  // A large payload: the rest goes straight into place.
  std::lock_guard lock(mutex_);
  if (closed_) return;
  auto on_payload = [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    if (ec) {
      self->on_disconnect(is_orderly_close(ec));
      return;
    }
    self->on_frame(self->header_);
  };
  auto rest = asio::buffer(payload_.data() + from_buffer, payload_.size() - from_buffer);
  start_on_stream([rest](auto& stream, auto handler) { asio::async_read(stream, rest, std::move(handler)); },
                  std::move(on_payload));
}

void connection::on_disconnect(bool orderly) {
  stop();
  if (!session_) return;
  if (orderly)
    state_->end_session(session_, "connection closed by the client");
  else
    session_->detach(this);  // a broken link: the client may resume within the lease
}

void connection::on_frame(const protocol::frame_header& header) {
  const std::uint32_t id = header.request_id;
  if (session_) session_->touch();  // any frame is a sign of life
  if (header.type == message_type::ping) {
    send(protocol::encode_frame(message_type::pong, id, nullptr));
    do_read_header();
    return;
  }
  if (header.type == message_type::goodbye) {
    if (session_) {
      session_->detach(this);  // so that ending the session leaves the queued replies to flush
      state_->end_session(session_, "goodbye");
    }
    close_after_flush();
    return;
  }
  auto payload = protocol::decode_payload(payload_, state_->value_limits);
  if (!payload) {
    send_error(id, payload.err());
    do_read_header();
    return;
  }
  if (header.type == message_type::call) {
    auto caller = session_;  // taken before the next read, which may run a hello elsewhere
    do_read_header();        // first, so the next request is read while this call runs
    handle_call(id, std::move(*payload), std::move(caller));
    return;
  }
  // Everything else is quick and handled before the next frame is read: hello in particular,
  // so that no later frame runs before the session exists.
  switch (header.type) {
    case message_type::hello: handle_hello(id, *payload); break;
    case message_type::authenticate: handle_authenticate(id, *payload); break;
    case message_type::describe: handle_describe(id, *payload); break;
    case message_type::lock: handle_lock(id, *payload); break;
    case message_type::unlock: handle_unlock(id, *payload); break;
    case message_type::lock_status: handle_lock_status(id, *payload); break;
    default:
      send_error(id, {errc::bad_message, "a client does not send " +
                                             std::string(protocol::message_type_name(header.type)) + " messages"});
  }
  do_read_header();
}

void connection::handle_hello(std::uint32_t request_id, const value& payload) {
  auto hello = protocol::parse_hello(payload);
  if (!hello) {
    send_error(request_id, hello.err());
    return;
  }
  if (hello->min_version > protocol::protocol_version ||
      hello->max_version < protocol::protocol_version) {
    send_error(request_id,
               {errc::unsupported_version,
                "client speaks versions " + std::to_string(hello->min_version) + " to " +
                    std::to_string(hello->max_version) + ", this daemon speaks " +
                    std::to_string(protocol::protocol_version)});
    close_after_flush();
    return;
  }
  if (session_ || pending_hello_) {
    send_error(request_id, {errc::bad_message, "this connection already said hello"});
    return;
  }
  if (state_->auth_secret.empty()) return open_session(request_id, *hello);
  // The daemon requires a secret: prove ours, and ask for the client's proof.
  if (hello->client_nonce.size() != protocol::nonce_size) {
    send_error(request_id, {errc::auth_failed, "daemon " + state_->config.name +
                                                   " requires a secret (LABHOST_SECRET or LABHOST_SECRET_FILE)"});
    close_after_flush();
    return;
  }
  pending_hello_ = std::move(*hello);
  server_nonce_ = protocol::random_nonce();
  protocol::challenge_message challenge{
      server_nonce_, protocol::server_proof(state_->auth_secret, pending_hello_->client_nonce, server_nonce_)};
  send_value(message_type::challenge, request_id, protocol::to_value(challenge));
}

void connection::handle_authenticate(std::uint32_t request_id, const value& payload) {
  if (!pending_hello_) {
    send_error(request_id, {errc::bad_message, "authenticate answers a challenge; send hello first"});
    return;
  }
  auto answer = protocol::parse_authenticate(payload);
  auto expected = protocol::client_proof(state_->auth_secret, server_nonce_, pending_hello_->client_nonce);
  if (answer && protocol::proofs_equal(answer->client_proof, expected)) {
    auto hello = std::move(*pending_hello_);
    pending_hello_.reset();
    return open_session(request_id, hello);
  }
  LABHOST_LOG(warning) << "authentication failed for " << pending_hello_->client_name << " from " << peer_;
  pending_hello_.reset();
  // A short delay makes guessing slow; the timer keeps the thread free meanwhile.
  auto delay = std::make_shared<asio::steady_timer>(state_->io, std::chrono::milliseconds(500));
  delay->async_wait([self = shared_from_this(), delay, request_id](boost::system::error_code) {
    self->send_error(request_id, {errc::auth_failed, "wrong secret"});
    self->close_after_flush();
  });
}

void connection::open_session(std::uint32_t request_id, const protocol::hello_message& hello_in) {
  const protocol::hello_message* hello = &hello_in;
  handshake_timer_.cancel();
  protocol::welcome_message welcome;
  if (!hello->session_token.empty()) {
    session_ = state_->find_session(hello->session_token);
    if (session_) {
      session_->attach(shared_from_this(), peer_);
      session_->touch();
      welcome.resumed = true;
      LABHOST_LOG(debug) << "session of " << session_->info().client_name << " resumed from " << peer_;
    }
  }
  if (!session_) {
    session_ = state_->open_session({state_->new_session_token(), hello->client_name, hello->pid, peer_});
    session_->attach(shared_from_this(), peer_);
    LABHOST_LOG(debug) << "session opened by " << hello->client_name << " (pid " << hello->pid
                       << ") from " << peer_;
  }
  welcome.session_token = session_->token();
  welcome.daemon = state_->config.name;
  welcome.server_version = LABHOST_VERSION;
  welcome.lease_ms = state_->config.lease.count();
  send(protocol::encode_frame(message_type::welcome, request_id, protocol::to_value(welcome)));
}

void connection::handle_describe(std::uint32_t request_id, const value& payload) {
  if (!session_) {
    send_error(request_id, {errc::bad_message, "send hello before describe"});
    return;
  }
  auto describe = protocol::parse_describe(payload);
  if (!describe) {
    send_error(request_id, describe.err());
    return;
  }
  if (describe->service.empty()) {
    send(protocol::encode_frame(message_type::description, request_id,
                                protocol::to_value(state_->describe())));
    return;
  }
  if (state_->names && describe->service == "nameserver") {
    send_value(message_type::description, request_id,
               protocol::to_value(state_->nameserver_description(true)));
    return;
  }
  auto it = state_->services.find(describe->service);
  if (it == state_->services.end()) {
    send_error(request_id, {errc::no_such_service, "daemon " + state_->config.name +
                                                       " has no service '" + describe->service + "'"});
    return;
  }
  send(protocol::encode_frame(message_type::description, request_id,
                              protocol::to_value(it->second->svc->describe(true))));
}

void connection::handle_call(std::uint32_t request_id, value payload, std::shared_ptr<session> caller) {
  if (!caller) {
    send_error(request_id, {errc::bad_message, "send hello before call"});
    return;
  }
  auto call = protocol::parse_call(std::move(payload));
  if (!call) {
    send_error(request_id, call.err());
    return;
  }
  if (state_->names && call->service == "nameserver") {
    // The name table is quick and guarded by its own mutex: answered right here.
    auto answer = state_->names->call(caller->info(), call->method, call->args, call->kwargs);
    if (!answer) return send_error(request_id, answer.err());
    return send_value(message_type::result, request_id, *answer);
  }
  auto it = state_->services.find(call->service);
  if (it == state_->services.end()) {
    std::string known;
    for (const auto& [name, unused] : state_->services) known += (known.empty() ? "" : ", ") + name;
    send_error(request_id, {errc::no_such_service, "daemon " + state_->config.name +
                                                       " has no service '" + call->service +
                                                       "' (it has: " + known + ")"});
    return;
  }
  if (state_->shutting_down) {
    send_error(request_id, {errc::shutting_down, "daemon " + state_->config.name + " is stopping"});
    return;
  }
  service_slot& slot = *it->second;
  if (caller->calls_in_flight() >= state_->config.max_requests_in_flight) {
    send_error(request_id, {errc::busy, "this session already has " +
                                            std::to_string(state_->config.max_requests_in_flight) +
                                            " calls in flight (max_requests_in_flight)"});
    return;
  }
  state_->calls_in_flight.fetch_add(1);
  caller->call_started();  // a session waiting on a call is alive, however long the call
  // dispatch: runs right here when the service is free (no thread hop), else queues on the
  // service's strand behind the call that holds it. With TLS this thread is inside the
  // connection's strand: post, so that a long call does not hold up the connection's I/O.
  auto run = [self = shared_from_this(), request_id, &slot, caller, call = std::move(*call)]() mutable {
    self->state_->pool->call_started();
    auto reply = self->run_call(request_id, slot, *caller, call);
    self->state_->pool->call_finished();
    // Counted out before the reply leaves, so that the client's next request, sent the moment
    // it reads this one, never finds the call still counted.
    caller->call_finished();
    self->state_->calls_in_flight.fetch_sub(1);
    self->send(std::move(reply));
  };
  if (tls_)
    asio::post(slot.strand, std::move(run));
  else
    asio::dispatch(slot.strand, std::move(run));
}

protocol::frame_buffer connection::run_call(std::uint32_t request_id, service_slot& slot, const session& caller,
                                           const protocol::call_message& call) {
  protocol::frame_buffer frame(std::vector<std::uint8_t>(protocol::header_size));  // the result follows
  auto failure = slot.svc->call(caller.info(), call.method, call.args, call.kwargs, frame,
                                state_->config.max_frame_bytes);
  if (failure) {
    if (failure->code == errc::driver_error)
      LABHOST_LOG_SERVICE(info, slot.svc->name()) << call.method << ": " << failure->message;
    return protocol::frame_buffer(
        protocol::encode_frame(message_type::error, request_id, protocol::to_value(*failure)));
  }
  protocol::frame_header h;
  h.type = message_type::result;
  h.request_id = request_id;
  h.payload_size = static_cast<std::uint32_t>(frame.size() - protocol::header_size);
  protocol::write_header(h, std::span<std::uint8_t, protocol::header_size>(frame.head().data(), protocol::header_size));
  return frame;
}

service_slot* connection::service_or_reply(std::uint32_t request_id, const std::string& name) {
  service_slot* slot = state_->find_service(name);
  if (slot == nullptr)
    send_error(request_id, {errc::no_such_service,
                            "daemon " + state_->config.name + " has no service '" + name + "'"});
  return slot;
}

service_slot* connection::lockable_service_or_reply(std::uint32_t request_id, const std::string& name) {
  service_slot* slot = service_or_reply(request_id, name);
  if (slot != nullptr && !state_->config.lockable) {
    send_error(request_id, {errc::not_lockable,
                            "daemon " + state_->config.name + " is shared: its services cannot be locked"});
    return nullptr;
  }
  return slot;
}

void connection::handle_lock(std::uint32_t request_id, const value& payload) {
  if (!session_) return send_error(request_id, {errc::bad_message, "send hello before lock"});
  auto request = protocol::parse_lock(payload);
  if (!request) return send_error(request_id, request.err());
  service_slot* slot = lockable_service_or_reply(request_id, request->service);
  if (slot == nullptr) return;
  auto outcome = slot->svc->try_lock(session_->info());
  if (outcome != service::service::lock_result::held_by_other) {
    if (outcome == service::service::lock_result::granted)
      LABHOST_LOG_SERVICE(info, slot->svc->name()) << "locked by " << session_->info().client_name;
    return send_value(message_type::result, request_id,
                      protocol::to_value(state_->lock_report_for(*slot, session_->token())));
  }
  auto holder = slot->svc->holder();
  std::string held_by = holder ? service::describe_holder(*holder) : "another session";
  if (request->wait_ms == 0)
    return send_error(request_id, {errc::locked, slot->svc->name() + " is locked by " + held_by});

  // Wait in line; the timer answers `locked` if the lock has not come free in time.
  auto waiter = std::make_shared<lock_waiter>(state_->io, weak_from_this(), session_, request_id);
  {
    std::lock_guard lock(slot->waiters_mutex);
    slot->waiters.push_back(waiter);
  }
  waiter->timer.expires_after(std::chrono::milliseconds(request->wait_ms));
  waiter->timer.async_wait([waiter, slot, wait_ms = request->wait_ms](boost::system::error_code ec) {
    if (ec) return;  // cancelled: granted
    {
      std::lock_guard lock(slot->waiters_mutex);
      if (waiter->done) return;
      waiter->done = true;
    }
    auto holder_now = slot->svc->holder();
    if (auto c = waiter->reply_to.lock())
      c->send_error(waiter->request_id,
                    {errc::locked, slot->svc->name() + " is still locked by " +
                                       (holder_now ? service::describe_holder(*holder_now) : "another session") +
                                       " after waiting " + std::to_string(wait_ms) + " ms"});
  });
  // The lock may have come free between try_lock and joining the line.
  state_->grant_waiters(*slot);
}

void connection::handle_unlock(std::uint32_t request_id, const value& payload) {
  if (!session_) return send_error(request_id, {errc::bad_message, "send hello before unlock"});
  auto request = protocol::parse_unlock(payload);
  if (!request) return send_error(request_id, request.err());
  service_slot* slot = lockable_service_or_reply(request_id, request->service);
  if (slot == nullptr) return;
  if (request->force) {
    if (state_->admin_secret.empty())
      return send_error(request_id, {errc::not_authorised,
                                     "force unlock is not enabled on daemon " + state_->config.name +
                                         " (host.json admin_secret_file)"});
    if (!service::secrets_equal(request->admin_secret, state_->admin_secret)) {
      LABHOST_LOG_SERVICE(warning, slot->svc->name())
          << "force unlock refused: wrong admin secret from " << session_->info().client_name << " at " << peer_;
      return send_error(request_id, {errc::not_authorised, "wrong admin secret"});
    }
    auto former = slot->svc->force_unlock();
    if (former)
      LABHOST_LOG_SERVICE(warning, slot->svc->name())
          << "lock of " << former->holder.client_name << " force-released by " << session_->info().client_name;
  } else if (auto failure = slot->svc->unlock(session_->token())) {
    return send_error(request_id, *failure);
  } else {
    LABHOST_LOG_SERVICE(info, slot->svc->name()) << "unlocked by " << session_->info().client_name;
  }
  send_value(message_type::result, request_id, nullptr);
  state_->grant_waiters(*slot);
}

void connection::handle_lock_status(std::uint32_t request_id, const value& payload) {
  if (!session_) return send_error(request_id, {errc::bad_message, "send hello before lock_status"});
  auto request = protocol::parse_lock_status(payload);
  if (!request) return send_error(request_id, request.err());
  list reports;
  if (!request->service.empty()) {
    service_slot* slot = service_or_reply(request_id, request->service);
    if (slot == nullptr) return;
    reports.push_back(protocol::to_value(state_->lock_report_for(*slot, session_->token())));
  } else {
    for (auto& [name, slot] : state_->services)
      reports.push_back(protocol::to_value(state_->lock_report_for(*slot, session_->token())));
  }
  send_value(message_type::result, request_id, reports);
}

void connection::send_value(message_type type, std::uint32_t request_id, const value& payload) {
  send(protocol::encode_frame(type, request_id, payload));
}

namespace {

/// The bytes of a frame from `offset` on, as one or two buffers (head, then tail).
std::array<asio::const_buffer, 2> unsent_part(const protocol::frame_buffer& frame, std::size_t offset) {
  const auto& head = frame.head();
  const auto tail = frame.tail();
  if (offset < head.size())
    return {asio::buffer(head.data() + offset, head.size() - offset), asio::buffer(tail.data(), tail.size())};
  offset -= head.size();
  return {asio::buffer(tail.data() + offset, tail.size() - offset), asio::const_buffer()};
}

}  // namespace

void connection::send(std::vector<std::uint8_t> frame) { send(protocol::frame_buffer(std::move(frame))); }

void connection::send(protocol::frame_buffer frame) {
  if (tls_) {
    asio::dispatch(strand_, [self = shared_from_this(), frame = std::move(frame)]() mutable {
      std::lock_guard lock(self->mutex_);
      if (self->closed_ || !self->tls_established_) return;  // nothing readable before TLS is up
      self->write_queue_.push_back({std::move(frame), 0});
      if (!self->writing_) self->do_write();
    });
    return;
  }
  std::lock_guard lock(mutex_);
  if (closed_) return;
  std::size_t written = 0;
  if (!writing_) {
    // Most replies fit in the socket's buffer: write them now, on this thread, rather than
    // through an asynchronous write whose completion costs another round through the pool.
    boost::system::error_code ec;
    written = socket_.write_some(unsent_part(frame, 0), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      written = 0;
    } else if (ec) {
      close_locked();
      return;
    }
    if (written == frame.size()) {
      if (close_after_flush_) close_locked();
      return;
    }
  }
  write_queue_.push_back({std::move(frame), written});
  if (!writing_) do_write();
}

void connection::send_error(std::uint32_t request_id, const error& e) {
  send(protocol::encode_frame(message_type::error, request_id, protocol::to_value(e)));
}

void connection::close_after_flush() {
  if (tls_ && !strand_.running_in_this_thread()) {
    // After the replies that send() handed to the strand before this call.
    asio::dispatch(strand_, [self = shared_from_this()] { self->close_after_flush(); });
    return;
  }
  std::lock_guard lock(mutex_);
  if (closed_) return;
  close_after_flush_ = true;
  if (!writing_) close_locked();
}

void connection::do_write() {
  writing_ = true;
  auto& front = write_queue_.front();
  auto bytes = unsent_part(front.frame, front.offset);
  auto on_written = [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    std::lock_guard lock(self->mutex_);
    if (self->closed_) return;
    if (ec) {
      self->close_locked();
      return;
    }
    self->write_queue_.pop_front();
    if (!self->write_queue_.empty()) {
      self->do_write();
      return;
    }
    self->writing_ = false;
    if (self->close_after_flush_) self->close_locked();
  };
  start_on_stream([bytes](auto& stream, auto handler) { asio::async_write(stream, bytes, std::move(handler)); },
                  std::move(on_written));
}

void connection::close_locked() {
  if (closed_) return;
  closed_ = true;
  if (tls_) {
    // OpenSSL may be using the queued bytes on the strand right now: they are freed with the
    // connection, and the socket is closed on the strand, after what it is doing.
    if (strand_.running_in_this_thread())
      close_socket();
    else
      asio::post(strand_, [self = shared_from_this()] { self->close_socket(); });
    return;
  }
  write_queue_.clear();
  close_socket();
}

void connection::close_socket() {
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

}  // namespace labhost::server
