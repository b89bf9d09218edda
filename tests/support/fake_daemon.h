// fake_daemon.h: a loopback listener that plays a daemon by hand, for tests of the client's
// rules (docs/clients.md) that a real daemon cannot be made to break on cue: a reply cut off
// mid-frame, a connection-level error, a refusal on reconnecting, a link closed while idle.
//
// Each accepted connection is numbered from 1 and served on its own thread: hello is answered
// by a welcome (or by `answer_hello`), then each request by the script. Every request is kept.
#ifndef LABHOST_TESTS_FAKE_DAEMON_H
#define LABHOST_TESTS_FAKE_DAEMON_H

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "labhost/errors.h"
#include "labhost/value.h"
#include "protocol/frame.h"

namespace labhost::testing {

struct fake_request {
  int connection = 0;  // 1 for the first connection accepted
  protocol::frame_header header;
  value payload;
};

/// What the fake daemon does with a request: send `bytes` (nothing when empty), then keep
/// the connection, close it (FIN), or reset it (RST).
struct fake_reply {
  enum class then { keep, close, reset };
  std::vector<std::uint8_t> bytes;
  then after = then::keep;
};

class fake_daemon {
 public:
  using script = std::function<fake_reply(const fake_request&)>;
  /// Answers hello instead of the welcome when it returns a reply (its `after` applies).
  using hello_script = std::function<std::optional<fake_reply>(const fake_request&)>;

  explicit fake_daemon(script answer, hello_script answer_hello = {}, std::int64_t lease_ms = 0);
  ~fake_daemon();
  fake_daemon(const fake_daemon&) = delete;
  fake_daemon& operator=(const fake_daemon&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// Connections accepted so far.
  int connections() const;
  /// Every request after hello, in arrival order, and every hello.
  std::vector<fake_request> requests() const;
  std::vector<fake_request> hellos() const;
  /// Waits (30 s at most, then throws) until `done()` holds; checked after every event.
  void wait_until(const std::function<bool()>& done) const;
  /// True once the fake daemon closed (or reset) connection `n`.
  bool closed(int n) const;

 private:
  void accept_loop();
  void serve(int fd, int number);
  void finish(int fd, int number, fake_reply::then how);

  script answer_;
  hello_script answer_hello_;
  std::int64_t lease_ms_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<int> open_fds_;
  std::vector<int> closed_;
  std::vector<fake_request> requests_, hellos_;
  int accepted_ = 0;
  std::uint64_t events_ = 0;  // connections, requests and closes so far
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

/// A result frame answering `request_id`.
std::vector<std::uint8_t> result_frame(std::uint32_t request_id, const value& v);
/// An error frame (request id 0: a connection-level error).
std::vector<std::uint8_t> error_frame(std::uint32_t request_id, errc code, const std::string& message);

}  // namespace labhost::testing

#endif  // LABHOST_TESTS_FAKE_DAEMON_H
