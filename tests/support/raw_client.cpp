#include "raw_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "protocol/messages.h"

namespace labhost::testing {

raw_client::raw_client(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd_);
    throw std::runtime_error("raw_client: cannot connect to port " + std::to_string(port));
  }
  timeval tv{30, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

raw_client::~raw_client() { ::close(fd_); }

void raw_client::send(const std::vector<std::uint8_t>& bytes) {
  if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
    throw std::runtime_error("raw_client: send failed");
}

std::optional<std::pair<protocol::frame_header, value>> raw_client::receive() {
  std::array<std::uint8_t, protocol::header_size> head;
  if (!read_exact(head.data(), head.size())) return std::nullopt;
  auto h = protocol::parse_header(head, limits::default_max_frame_bytes);
  if (!h) throw std::runtime_error("raw_client: the daemon sent a bad header: " + h.err().to_string());
  std::vector<std::uint8_t> payload(h->payload_size);
  if (!read_exact(payload.data(), payload.size())) throw std::runtime_error("raw_client: truncated frame");
  auto v = protocol::decode_payload(payload);
  if (!v) throw std::runtime_error("raw_client: the daemon sent a bad payload: " + v.err().to_string());
  return std::make_pair(*h, std::move(*v));
}

std::uint16_t raw_client::local_port() const {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

bool raw_client::reply_waiting() const {
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

std::optional<std::size_t> unread_bytes(std::uint16_t local_port, std::uint16_t remote_port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the column names
  while (std::getline(table, line)) {
    // "  3: 0100007F:1F91 0100007F:D2C4 01 00000000:0000005F ..."
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues;
    fields >> slot >> local >> remote >> state >> queues;
    auto port_of = [](const std::string& address) {
      return static_cast<std::uint16_t>(std::stoul(address.substr(address.find(':') + 1), nullptr, 16));
    };
    if (local.empty() || remote.empty() || port_of(local) != local_port || port_of(remote) != remote_port) continue;
    return static_cast<std::size_t>(std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16));
  }
  return std::nullopt;
}

bool raw_client::closed_by_peer() {
  char byte;
  return ::recv(fd_, &byte, 1, 0) == 0;
}

std::string raw_client::hello(const std::string& client_name, std::int64_t max_version,
                              const std::string& session_token) {
  protocol::hello_message m;
  m.client_name = client_name;
  m.pid = 1;
  m.max_version = max_version;
  m.session_token = session_token;
  send(protocol::encode_frame(protocol::message_type::hello, 1, protocol::to_value(m)));
  auto reply = receive();
  if (!reply || reply->first.type != protocol::message_type::welcome)
    throw std::runtime_error("raw_client: no welcome after hello");
  return reply->second.find("session_token")->as_string();
}

void raw_client::reset() {
  linger abort_on_close{1, 0};  // close() sends a reset: a broken link, not a goodbye
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
  ::close(fd_);
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // unconnected: later use fails cleanly
}

bool raw_client::read_exact(std::uint8_t* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    ssize_t r = ::recv(fd_, data + got, size - got, 0);
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace labhost::testing
