#include "transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace labhost::client_detail {

namespace {

[[noreturn]] void fail(errc code, std::string message) { throw remote_error(error{code, std::move(message)}); }

int connect_socket(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) fail(errc::connection_lost, "cannot resolve " + host + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    // Non-blocking connect so that an unreachable host fails after `timeout`, not minutes.
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int r = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      r = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (r == 0) {
        last_error = "timed out";
        ::close(fd);
        continue;
      }
      int so_error = 0;
      socklen_t len = sizeof so_error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      r = so_error == 0 ? 0 : -1;
      errno = so_error;
    }
    if (r == 0) {
      ::fcntl(fd, F_SETFL, flags);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  fail(errc::connection_lost, "cannot connect to " + host + ":" + std::to_string(port) + ": " + last_error);
}

}  // namespace

transport& transport::operator=(transport&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    tls_ = std::move(other.tls_);
    policy_ = other.policy_;
    read_buffer_ = std::move(other.read_buffer_);
    buffered_begin_ = std::exchange(other.buffered_begin_, 0);
    buffered_end_ = std::exchange(other.buffered_end_, 0);
  }
  return *this;
}

transport transport::connect(const std::string& host, std::uint16_t port, const transport_settings& settings,
                             time_point deadline) {
  transport t;
  t.fd_ = connect_socket(host, port, settings.connect_timeout);
  t.policy_ = protocol::busy_poll_policy(settings.busy_poll);
  if (!settings.tls.ca_file.empty()) t.tls_ = std::make_unique<tls_link>(t.fd_, host, settings.tls, deadline);
  return t;
}

void transport::close() {
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

transport::send_outcome transport::send(const std::vector<std::uint8_t>& frame) {
  std::size_t sent = 0;
  if (tls_) {
    auto failure = tls_->write_all(frame.data(), frame.size(), sent);
    return {std::move(failure), sent > 0};
  }
  while (sent < frame.size()) {
    ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return {error{errc::connection_lost, std::string("send failed: ") + std::strerror(errno)}, sent > 0};
    sent += static_cast<std::size_t>(n);
  }
  return {std::nullopt, true};
}

std::optional<long> transport::receive_polling(std::uint8_t* into, std::size_t room,
                                               std::chrono::microseconds window) {
  if (window.count() == 0) return std::nullopt;
  const auto until = std::chrono::steady_clock::now() + window;
  do {
    ssize_t n = ::recv(fd_, into, room, MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      policy_.found_by_polling();
      return n;
    }
  } while (std::chrono::steady_clock::now() < until);
  return std::nullopt;
}

std::size_t transport::take_buffered(std::uint8_t* data, std::size_t size) {
  const std::size_t n = std::min(size, buffered_end_ - buffered_begin_);
  if (n > 0) std::memcpy(data, read_buffer_.get() + buffered_begin_, n);
  buffered_begin_ += n;
  return n;
}

std::optional<error> transport::read_exact(std::uint8_t* data, std::size_t size, std::optional<time_point> deadline,
                                           bool busy_poll, std::size_t* read_so_far) {
  std::size_t local_count = 0;
  std::size_t& got = read_so_far ? *read_so_far : local_count;
  if (tls_) return tls_->read_exact(data, size, deadline, got);
  got = take_buffered(data, size);
  while (got < size) {
    // A large rest goes straight into place; a small one through the buffer, so that one
    // recv brings a whole small reply (header and payload) instead of one per part.
    const bool direct = size - got >= read_buffer_size / 2;
    if (!direct && !read_buffer_) read_buffer_ = std::make_unique_for_overwrite<std::uint8_t[]>(read_buffer_size);
    std::uint8_t* into = direct ? data + got : read_buffer_.get();
    const std::size_t room = direct ? size - got : read_buffer_size;
    const auto window = busy_poll ? policy_.window_now() : std::chrono::microseconds::zero();
    std::optional<long> polled = receive_polling(into, room, window);
    long n;
    if (polled) {
      n = *polled;
    } else {
      const auto slept_from = std::chrono::steady_clock::now();
      if (deadline) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - slept_from);
        if (left.count() <= 0) return error{errc::timeout, "no reply in time"};
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r == 0) return error{errc::timeout, "no reply in time"};
        if (r < 0 && errno != EINTR) return error{errc::connection_lost, std::strerror(errno)};
        if (r < 0) continue;
      }
      n = ::recv(fd_, into, room, 0);
      if (busy_poll) policy_.slept(window.count() > 0, std::chrono::steady_clock::now() - slept_from);
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return error{errc::connection_lost, "the daemon closed the connection"};
    if (n < 0) return error{errc::connection_lost, std::string("recv failed: ") + std::strerror(errno)};
    if (direct) {
      got += static_cast<std::size_t>(n);
    } else {
      buffered_begin_ = 0;
      buffered_end_ = static_cast<std::size_t>(n);
      got += take_buffered(data + got, size - got);
    }
  }
  return std::nullopt;
}

void transport::bound_silence(std::chrono::milliseconds lease) noexcept {
  if (fd_ < 0) return;
  const auto bound = std::max(lease, std::chrono::milliseconds(1000));
  const unsigned user_timeout_ms = static_cast<unsigned>(bound.count());
  ::setsockopt(fd_, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  // An idle link is probed a third of the lease after its last traffic, then every third:
  // with TCP_USER_TIMEOUT, unanswered probes end it a lease later.
  const int one = 1;
  const int third_s = std::max(1, static_cast<int>(bound.count() / 3000));
  const int probes = 3;
  ::setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPIDLE, &third_s, sizeof third_s);
  ::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPINTVL, &third_s, sizeof third_s);
  ::setsockopt(fd_, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

bool transport::peer_closed() {
  if (fd_ < 0) return true;
  if (buffered_end_ > buffered_begin_) return false;  // a frame waits to be read first
  if (tls_) return tls_->peer_closed();
  char byte;
  ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return false;
  if (n == 0) return true;
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

void transport::shutdown(bool abortive) {
  if (fd_ < 0) return;
  if (abortive) {
    linger reset{1, 0};  // close() then sends RST
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    ::shutdown(fd_, SHUT_RD);  // wakes a blocked reader without telling the daemon anything
  } else {
    ::shutdown(fd_, SHUT_RDWR);
  }
}

void transport::close_notify() {
  if (tls_) tls_->close_notify();
}

}  // namespace labhost::client_detail
