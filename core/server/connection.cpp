#include "connection.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "../logging/log.h"
#include "../protocol/messages.h"
#include "labhost/value_codec.h"

namespace labhost::server {

namespace asio = boost::asio;
using protocol::message_type;

connection::connection(asio::ip::tcp::socket socket, std::shared_ptr<daemon_state> state)
    : socket_(std::move(socket)), state_(std::move(state)) {
  boost::system::error_code ec;
  auto remote = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : remote.address().to_string() + ":" + std::to_string(remote.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

connection::~connection() { state_->remove(this); }

void connection::start() {
  state_->add(shared_from_this());
  do_read_header();
}

void connection::refuse(const error& e) {
  send_error(0, e);
  close_after_flush();
}

void connection::stop() {
  std::lock_guard lock(mutex_);
  close_locked();
}

void connection::do_read_header() {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  asio::async_read(socket_, asio::buffer(header_bytes_),
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     if (ec) {
                       self->stop();  // peer closed or reset: the session ends with it
                       return;
                     }
                     auto parsed = protocol::parse_header(self->header_bytes_,
                                                          self->state_->config.max_frame_bytes);
                     if (!parsed) {
                       // The stream cannot be resynchronised after a bad header: say why, then close.
                       LABHOST_LOG(warning) << self->peer_ << ": " << parsed.err().to_string();
                       self->send_error(0, parsed.err());
                       self->close_after_flush();
                       return;
                     }
                     self->header_ = *parsed;
                     self->do_read_payload();
                   });
}

void connection::do_read_payload() {
  // The length was checked against max_frame_bytes by parse_header: only now allocate.
  payload_.resize(header_.payload_size);
  if (payload_.empty()) {
    on_frame(header_);
    return;
  }
  std::lock_guard lock(mutex_);
  if (closed_) return;
  asio::async_read(socket_, asio::buffer(payload_),
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     if (ec) {
                       self->stop();
                       return;
                     }
                     self->on_frame(self->header_);
                   });
}

void connection::on_frame(const protocol::frame_header& header) {
  const std::uint32_t id = header.request_id;
  if (header.type == message_type::ping) {
    send(protocol::encode_frame(message_type::pong, id, nullptr));
    do_read_header();
    return;
  }
  if (header.type == message_type::goodbye) {
    close_after_flush();
    return;
  }
  auto payload = protocol::decode_payload(payload_);
  if (!payload) {
    send_error(id, payload.err());
    do_read_header();
    return;
  }
  switch (header.type) {
    case message_type::hello:
      handle_hello(id, *payload);
      do_read_header();  // after hello is done, so no later frame runs before the session exists
      return;
    case message_type::describe:
      handle_describe(id, *payload);
      do_read_header();
      return;
    case message_type::call:
      do_read_header();  // first, so the next request is read while this call runs
      handle_call(id, std::move(*payload));
      return;
    default:
      send_error(id, {errc::bad_message,
                      "a client does not send " +
                          std::string(protocol::message_type_name(header.type)) + " messages"});
      do_read_header();
      return;
  }
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
  if (!greeted_) {
    session_token_ = state_->new_session_token();
    client_name_ = hello->client_name;
    greeted_ = true;
    LABHOST_LOG(debug) << "session opened by " << client_name_ << " (pid " << hello->pid
                       << ") from " << peer_;
  }
  protocol::welcome_message welcome;
  welcome.session_token = session_token_;
  welcome.daemon = state_->config.name;
  welcome.server_version = LABHOST_VERSION;
  welcome.lease_ms = state_->config.lease.count();
  send(protocol::encode_frame(message_type::welcome, request_id, protocol::to_value(welcome)));
}

void connection::handle_describe(std::uint32_t request_id, const value& payload) {
  if (!greeted_) {
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
  auto it = state_->services.find(describe->service);
  if (it == state_->services.end()) {
    send_error(request_id, {errc::no_such_service, "daemon " + state_->config.name +
                                                       " has no service '" + describe->service + "'"});
    return;
  }
  send(protocol::encode_frame(message_type::description, request_id,
                              protocol::to_value(it->second->svc->describe(true))));
}

void connection::handle_call(std::uint32_t request_id, value payload) {
  if (!greeted_) {
    send_error(request_id, {errc::bad_message, "send hello before call"});
    return;
  }
  auto call = protocol::parse_call(std::move(payload));
  if (!call) {
    send_error(request_id, call.err());
    return;
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
  state_->calls_in_flight.fetch_add(1);
  // dispatch: runs right here when the service is free (no thread hop), else queues on the
  // service's strand behind the call that holds it.
  asio::dispatch(slot.strand, [self = shared_from_this(), request_id, &slot,
                               call = std::move(*call)]() mutable {
    self->run_call(request_id, slot, call);
    self->state_->calls_in_flight.fetch_sub(1);
  });
}

void connection::run_call(std::uint32_t request_id, service_slot& slot,
                          const protocol::call_message& call) {
  std::vector<std::uint8_t> frame(protocol::header_size);  // the result is written after it
  auto failure = slot.svc->call(call.method, call.args, call.kwargs, frame,
                                state_->config.max_frame_bytes);
  if (failure) {
    if (failure->code == errc::driver_error)
      LABHOST_LOG_SERVICE(info, slot.svc->name()) << call.method << ": " << failure->message;
    send_error(request_id, *failure);
    return;
  }
  protocol::frame_header h;
  h.type = message_type::result;
  h.request_id = request_id;
  h.payload_size = static_cast<std::uint32_t>(frame.size() - protocol::header_size);
  protocol::write_header(h, std::span<std::uint8_t, protocol::header_size>(frame.data(),
                                                                           protocol::header_size));
  send(std::move(frame));
}

void connection::send(std::vector<std::uint8_t> frame) {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  write_queue_.push_back(std::move(frame));
  if (!writing_) do_write();
}

void connection::send_error(std::uint32_t request_id, const error& e) {
  send(protocol::encode_frame(message_type::error, request_id, protocol::to_value(e)));
}

void connection::close_after_flush() {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  close_after_flush_ = true;
  if (!writing_) close_locked();
}

void connection::do_write() {
  writing_ = true;
  asio::async_write(socket_, asio::buffer(write_queue_.front()),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
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
                    });
}

void connection::close_locked() {
  if (closed_) return;
  closed_ = true;
  write_queue_.clear();
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

}  // namespace labhost::server
