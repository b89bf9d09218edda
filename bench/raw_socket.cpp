#include "raw_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

namespace labhost::bench {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

void put_u32(std::uint8_t* out, std::uint32_t v) { std::memcpy(out, &v, 4); }
std::uint32_t get_u32(const std::uint8_t* in) {
  std::uint32_t v;
  std::memcpy(&v, in, 4);
  return v;
}

/// Serves one floor connection until the peer closes it.
void serve(unique_fd fd) {
  std::uint8_t header[floor_header_size];
  std::vector<std::uint8_t> payload;
  std::vector<std::uint8_t> reply(floor_header_size, 0);  // header + payload, sent in one write
  try {
    while (recv_all(fd.get(), header, sizeof header)) {
      payload.resize(get_u32(header));
      if (!recv_all(fd.get(), payload.data(), payload.size())) return;
      std::uint32_t reply_payload = get_u32(header + 4);
      if (reply.size() != floor_header_size + reply_payload) {
        reply.assign(floor_header_size + reply_payload, 0);
        put_u32(reply.data(), reply_payload);
      }
      send_all(fd.get(), reply.data(), reply.size());
    }
  } catch (const std::runtime_error&) {
    // the client went away mid-message: nothing to serve
  }
}

}  // namespace

unique_fd::~unique_fd() {
  if (fd_ >= 0) ::close(fd_);
}

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

unique_fd connect_loopback(std::uint16_t port) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) fail("socket");
  auto a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    fail("connect to 127.0.0.1:" + std::to_string(port));
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

unique_fd listen_loopback(std::uint16_t port, int backlog) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) fail("socket");
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = loopback(port);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) fail("bind");
  if (::listen(fd.get(), backlog) != 0) fail("listen");
  return fd;
}

std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) fail("getsockname");
  return ntohs(a.sin_port);
}

std::uint16_t free_port() {
  auto fd = listen_loopback(0, 1);
  return local_port(fd.get());
}

void send_all(int fd, const std::uint8_t* data, std::size_t size) {
  std::size_t sent = 0;
  while (sent < size) {
    ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("send");
    sent += static_cast<std::size_t>(n);
  }
}

bool recv_all(int fd, std::uint8_t* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = ::recv(fd, data + got, size - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return false;
    if (n < 0) fail("recv");
    got += static_cast<std::size_t>(n);
  }
  return true;
}

floor_client::floor_client(std::uint16_t port, std::size_t request_size, std::size_t reply_size)
    : fd_(connect_loopback(port)) {
  set_sizes(request_size, reply_size);
}

void floor_client::set_sizes(std::size_t request_size, std::size_t reply_size) {
  if (request_size < floor_header_size || reply_size < floor_header_size)
    throw std::invalid_argument("floor message smaller than its header");
  request_.assign(request_size, 0);
  put_u32(request_.data(), static_cast<std::uint32_t>(request_size - floor_header_size));
  put_u32(request_.data() + 4, static_cast<std::uint32_t>(reply_size - floor_header_size));
  reply_.resize(reply_size);
}

void floor_client::round_trip() {
  send_all(fd_.get(), request_.data(), request_.size());
  if (!recv_all(fd_.get(), reply_.data(), floor_header_size))
    throw std::runtime_error("the floor server closed the connection");
  std::size_t payload = get_u32(reply_.data());
  if (payload != reply_.size() - floor_header_size)
    throw std::runtime_error("floor reply of an unexpected size");
  if (!recv_all(fd_.get(), reply_.data() + floor_header_size, payload))
    throw std::runtime_error("the floor server closed the connection");
}

int first_usable_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &set)) return cpu;
  return 0;
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity to CPU " + std::to_string(cpu));
}

int run_floor_server(bool threaded) {
  auto listener = listen_loopback(0, 4096);
  std::cout << "floor listening on 127.0.0.1:" << local_port(listener.get()) << std::endl;
  while (true) {
    int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      fail("accept");
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (threaded)
      std::thread([fd] { serve(unique_fd(fd)); }).detach();
    else
      serve(unique_fd(fd));
  }
}

}  // namespace labhost::bench
