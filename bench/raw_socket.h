// raw_socket.h: blocking loopback TCP sockets with TCP_NODELAY, and the floor's framing.
//
// The floor is the fastest a request/reply can go over loopback: a blocking client and a
// blocking server exchanging messages of labhost's sizes. Its framing is as small as framing
// gets and has the same shape as labhost's: a 16-byte header carrying the payload length,
// then the payload, so each side reads a header, then a payload, like labhost does.
//   request header: u32 payload size, u32 size of the reply payload wanted, 8 zero bytes
//   reply header:   u32 payload size, 12 zero bytes
// Errors throw std::runtime_error: the benchmark stops with one clear line.
#ifndef LABHOST_BENCH_RAW_SOCKET_H
#define LABHOST_BENCH_RAW_SOCKET_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace labhost::bench {

constexpr std::size_t floor_header_size = 16;

/// Owns a file descriptor. Move-only.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  ~unique_fd();
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept;
  int get() const noexcept { return fd_; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

/// A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY.
unique_fd connect_loopback(std::uint16_t port);
/// A socket listening on 127.0.0.1:port (0: a free port).
unique_fd listen_loopback(std::uint16_t port, int backlog);
std::uint16_t local_port(int fd);
/// A port that was free a moment ago (bound and released).
std::uint16_t free_port();

void send_all(int fd, const std::uint8_t* data, std::size_t size);
/// Reads exactly `size` bytes; false at end of stream.
bool recv_all(int fd, std::uint8_t* data, std::size_t size);

/// One connection of the floor client. Not thread-safe: one per thread.
class floor_client {
 public:
  /// Connects; every round_trip() sends `request_size` bytes and reads `reply_size` bytes
  /// (both counting the 16-byte header, like labhost frame sizes).
  floor_client(std::uint16_t port, std::size_t request_size, std::size_t reply_size);
  /// Changes the sizes of the next round trips (a connection's hello, then its calls).
  void set_sizes(std::size_t request_size, std::size_t reply_size);
  void round_trip();

 private:
  unique_fd fd_;
  std::vector<std::uint8_t> request_;
  std::vector<std::uint8_t> reply_;
};

/// The first CPU this process may run on.
int first_usable_cpu();
/// Keeps the calling thread (and the threads it starts later) on `cpu`. Throws when refused.
void pin_to_cpu(int cpu);

/// `labhost-bench floor-server`: serves floor requests on 127.0.0.1:0 until killed, after
/// printing "floor listening on 127.0.0.1:PORT". `threaded`: a thread per connection (the
/// classic blocking server); otherwise connections are served one after another on the
/// accepting thread (the cheapest possible accept, for the connect case).
int run_floor_server(bool threaded);

}  // namespace labhost::bench

#endif  // LABHOST_BENCH_RAW_SOCKET_H
