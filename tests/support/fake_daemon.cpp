#include "fake_daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

#include "protocol/messages.h"

namespace labhost::testing {

namespace {

bool read_exact(int fd, std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    auto n = ::recv(fd, data, size, 0);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

std::optional<fake_request> read_request(int fd, int connection) {
  std::array<std::uint8_t, protocol::header_size> head;
  if (!read_exact(fd, head.data(), head.size())) return std::nullopt;
  auto header = protocol::parse_header(head, limits::default_max_frame_bytes);
  if (!header) return std::nullopt;
  std::vector<std::uint8_t> payload(header->payload_size);
  if (!read_exact(fd, payload.data(), payload.size())) return std::nullopt;
  auto decoded = protocol::decode_payload(payload);
  if (!decoded) return std::nullopt;
  return fake_request{connection, *header, std::move(*decoded)};
}

void send_all(int fd, const std::vector<std::uint8_t>& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::vector<std::uint8_t> result_frame(std::uint32_t request_id, const value& v) {
  return protocol::encode_frame(protocol::message_type::result, request_id, v);
}

std::vector<std::uint8_t> error_frame(std::uint32_t request_id, errc code, const std::string& message) {
  return protocol::encode_frame(protocol::message_type::error, request_id, protocol::to_value(error{code, message}));
}

fake_daemon::fake_daemon(script answer, hello_script answer_hello, std::int64_t lease_ms)
    : answer_(std::move(answer)), answer_hello_(std::move(answer_hello)), lease_ms_(lease_ms) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 16) != 0 ||
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("fake_daemon: cannot listen on loopback");
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

fake_daemon::~fake_daemon() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);  // wakes their threads
  }
  ::shutdown(listener_, SHUT_RDWR);
  acceptor_.join();
  ::close(listener_);
  for (auto& t : threads_) t.join();
}

int fake_daemon::connections() const {
  std::lock_guard lock(mutex_);
  return accepted_;
}

std::vector<fake_request> fake_daemon::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<fake_request> fake_daemon::hellos() const {
  std::lock_guard lock(mutex_);
  return hellos_;
}

bool fake_daemon::closed(int n) const {
  std::lock_guard lock(mutex_);
  return std::find(closed_.begin(), closed_.end(), n) != closed_.end();
}

void fake_daemon::wait_until(const std::function<bool()>& done) const {
  // `done` takes the lock itself (it calls the accessors), so it runs unlocked; the event
  // count tells whether anything happened between its look and the wait.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::unique_lock lock(mutex_);
  for (;;) {
    const auto seen = events_;
    lock.unlock();
    if (done()) return;
    lock.lock();
    if (!changed_.wait_until(lock, give_up, [&] { return events_ != seen; }))
      throw std::runtime_error("fake_daemon: what the test waited for did not happen in 30 s");
  }
}

void fake_daemon::accept_loop() {
  for (;;) {
    int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::lock_guard lock(mutex_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    open_fds_.push_back(fd);
    int number = ++accepted_;
    threads_.emplace_back([this, fd, number] { serve(fd, number); });
    ++events_;
    changed_.notify_all();
  }
}

void fake_daemon::serve(int fd, int number) {
  auto record = [&](std::vector<fake_request>& list, const fake_request& r) {
    std::lock_guard lock(mutex_);
    list.push_back(r);
    ++events_;
    changed_.notify_all();
  };
  auto hello = read_request(fd, number);
  if (!hello) return finish(fd, number, fake_reply::then::close);
  record(hellos_, *hello);
  if (answer_hello_) {
    if (auto reply = answer_hello_(*hello)) {
      send_all(fd, reply->bytes);
      if (reply->after != fake_reply::then::keep) return finish(fd, number, reply->after);
    }
  }
  const auto& asked = hello->payload;
  const value* token = asked.is_map() ? asked.find("session_token") : nullptr;
  bool resuming = token != nullptr && token->is_string() && !token->as_string().empty();
  protocol::welcome_message welcome{protocol::protocol_version, resuming ? token->as_string() : std::string(32, 'f'),
                                    "fake", "0", lease_ms_, resuming};
  send_all(fd, protocol::encode_frame(protocol::message_type::welcome, hello->header.request_id,
                                      protocol::to_value(welcome)));
  for (;;) {
    auto request = read_request(fd, number);
    if (!request || request->header.type == protocol::message_type::goodbye) break;
    record(requests_, *request);
    auto reply = answer_(*request);
    send_all(fd, reply.bytes);
    if (reply.after != fake_reply::then::keep) return finish(fd, number, reply.after);
  }
  finish(fd, number, fake_reply::then::close);
}

void fake_daemon::finish(int fd, int number, fake_reply::then how) {
  if (how == fake_reply::then::reset) {
    linger l{1, 0};  // closing with a zero linger sends RST
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  std::lock_guard lock(mutex_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  ::close(fd);
  closed_.push_back(number);
  ++events_;
    changed_.notify_all();
}

}  // namespace labhost::testing
