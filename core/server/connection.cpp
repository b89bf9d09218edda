#include "connection.h"

#include <cstring>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "../logging/log.h"
#include "../protocol/messages.h"
#include "labhost/limits.h"

namespace labhost::server {

namespace asio = boost::asio;
using protocol::message_type;


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
      handshake_(*this, *state_),
      dispatcher_(*this, *state_),
      handshake_timer_(state_->io) {
  if (state_->tls_context) tls_ = std::make_unique<tls_stream>(socket_, *state_->tls_context);
  boost::system::error_code ec;
  auto remote = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : remote.address().to_string() + ":" + std::to_string(remote.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  socket_.non_blocking(true, ec);  // send() writes directly and must never block
}

connection::~connection() { state_->connections.remove(this); }

void connection::start() {
  state_->connections.add(shared_from_this());
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
      self->guarded(0, [&] {
        LABHOST_LOG(info) << self->peer_ << ": no handshake within "
                          << self->state_->config.handshake_timeout.count() << " ms; dropped";
        self->send_error(0, {errc::timeout, "no hello within the handshake timeout"});
        self->close_after_flush();
      });
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
    });  // run by on_tls_handshake, inside its guard
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
                               self->guarded(0, [&] { self->on_first_bytes(); });
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
                          self->guarded(0, [&] { self->on_tls_handshake(e); });
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
      certificate_ = subject;  // set before any frame is read: the read chain sees it
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
    auto next = [self = shared_from_this()] { self->guarded(0, [&] { self->on_buffered_header(); }); };
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
    self->guarded(0, [&] {
      if (ec) return self->on_disconnect(is_orderly_close(ec));
      self->buffered_end_ += n;
      if (self->buffered_end_ < protocol::header_size) return self->read_more();
      self->on_buffered_header();
    });
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
                                                                 limits::pre_handshake_max_payload);
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
  // From here on a failure belongs to this request: it is answered under its id.
  guarded(header_.request_id, [&] { read_payload(); });
}

void connection::read_payload() {
  // The length was checked against max_frame_bytes by parse_header: only now allocate.
  payload_.resize(header_.payload_size);
  const std::size_t from_buffer = std::min<std::size_t>(payload_.size(), buffered_end_ - buffered_begin_);
  std::memcpy(payload_.data(), read_buffer_.get() + buffered_begin_, from_buffer);
  buffered_begin_ += from_buffer;
  if (from_buffer == payload_.size()) return on_frame(header_);
  // A large payload: the rest goes straight into place.
  std::lock_guard lock(mutex_);
  if (closed_) return;
  auto on_payload = [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    self->guarded(self->header_.request_id, [&] {
      if (ec) return self->on_disconnect(is_orderly_close(ec));
      self->on_frame(self->header_);
    });
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
    send_value(message_type::pong, id, nullptr);
    return do_read_header();
  }
  if (header.type == message_type::goodbye) {
    if (session_) {
      session_->detach(this);  // so that ending the session leaves the queued replies to flush
      state_->end_session(session_, "goodbye");
    }
    return close_after_flush();
  }
  auto payload = protocol::decode_payload(payload_, state_->value_limits);
  if (!payload) {
    send_error(id, payload.err());
    return do_read_header();
  }
  if (header.type == message_type::call) {
    // Everything this call needs is taken before the next read starts: that read may run on
    // another thread at once and overwrite header_ and payload_ (a hello may change session_).
    auto caller = session_;
    const std::size_t payload_bytes = header.payload_size;
    do_read_header();  // first, so the next request is read while this call runs
    return dispatcher_.handle(message_type::call, id, std::move(*payload), payload_bytes, caller);
  }
  // Everything else is quick and handled before the next frame is read: hello in particular,
  // so that no later frame runs before the session exists.
  if (header.type == message_type::hello)
    handshake_.on_hello(id, *payload);
  else if (header.type == message_type::authenticate)
    handshake_.on_authenticate(id, *payload);
  else
    dispatcher_.handle(header.type, id, std::move(*payload), header.payload_size, session_);
  do_read_header();
}

void connection::session_opened(std::shared_ptr<session> s, std::int64_t version) {
  handshake_timer_.cancel();
  s->attach(shared_from_this(), peer_, version);
  session_ = std::move(s);
}

void connection::fault(std::uint32_t request_id, std::string_view what) noexcept {
  try {
    LABHOST_LOG(error) << peer_ << ": internal error: " << what << "; this connection is closed";
    // Its session stays for the client to resume: the fault was the daemon's, not the client's.
    if (session_) session_->detach(this);
    send_error(request_id, {errc::internal_error, "the daemon could not handle this request (" + std::string(what) +
                                                      "); it closed the connection"});
    close_after_flush();
  } catch (...) {
    // Not even that could be done (no memory left): just close.
    try {
      stop();
    } catch (...) {
    }
  }
}

void connection::send_value(message_type type, std::uint32_t request_id, const value& payload) {
  send(protocol::frame_buffer(protocol::encode_frame(type, request_id, payload)));
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


void connection::send(protocol::frame_buffer frame) {
  if (tls_) {
    asio::dispatch(strand_, [self = shared_from_this(), frame = std::move(frame)]() mutable {
      self->guarded(0, [&] {
        std::lock_guard lock(self->mutex_);
        if (self->closed_ || !self->tls_established_) return;  // nothing readable before TLS is up
        self->write_queue_.push_back({std::move(frame), 0});
        if (!self->writing_) self->do_write();
      });
    });
    return;
  }
  std::function<void()> sent;  // run once the lock is released: it may send again
  {
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
        sent = frame.take_on_sent();
      }
    }
    if (written < frame.size()) {
      write_queue_.push_back({std::move(frame), written});
      if (!writing_) do_write();
    }
  }
  if (sent) sent();
}

void connection::send_error(std::uint32_t request_id, const error& e) {
  send_value(message_type::error, request_id, protocol::to_value(e));
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
  auto& front = write_queue_.front();
  auto bytes = unsent_part(front.frame, front.offset);
  auto on_written = [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    self->guarded(0, [&] {
      std::function<void()> sent;  // run once the lock is released: it may send again
      {
        std::lock_guard lock(self->mutex_);
        if (self->closed_) return;
        if (ec) return self->close_locked();
        sent = self->write_queue_.front().frame.take_on_sent();
        self->write_queue_.pop_front();
        self->writing_ = false;
        if (!self->write_queue_.empty())
          self->do_write();
        else if (self->close_after_flush_)
          self->close_locked();
      }
      if (sent) sent();
    });
  };
  start_on_stream([bytes](auto& stream, auto handler) { asio::async_write(stream, bytes, std::move(handler)); },
                  std::move(on_written));
  writing_ = true;  // only once the write is under way: a failure to start it leaves none pending
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
