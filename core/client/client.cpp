#include "labhost/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "../protocol/auth.h"
#include "../protocol/busy_poll.h"
#include "../protocol/frame.h"
#include "../protocol/messages.h"
#include "tls_link.h"

namespace labhost {

using protocol::message_type;

namespace {

[[noreturn]] void fail(errc code, std::string message) {
  throw remote_error(error{code, std::move(message)});
}

std::string environment(const char* name) {
  const char* text = std::getenv(name);
  return text ? text : "";
}

std::string secret_from_environment() {
  if (const char* secret = std::getenv("LABHOST_SECRET"); secret && *secret) return secret;
  const char* file = std::getenv("LABHOST_SECRET_FILE");
  if (!file || !*file) return {};
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line))
    fail(errc::auth_failed, std::string("LABHOST_SECRET_FILE: cannot read ") + file);
  // Blanks around the secret are not part of it, as the daemon reads it (read_secret_file).
  auto first = line.find_first_not_of(" \t\r");
  auto last = line.find_last_not_of(" \t\r");
  return first == std::string::npos ? std::string() : line.substr(first, last - first + 1);
}


/// A reply waiting for its request id.
struct pending_reply {
  bool done = false;
  message_type type = message_type::error;
  std::vector<std::uint8_t> payload;
  std::optional<value> array;    // a result that is one typed array, read straight into place
  std::optional<error> failure;  // transport failure (connection_lost, timeout, bad_frame)
};

}  // namespace

namespace {

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

/// One connection to a daemon: its socket, with TLS over it when the client uses TLS.
struct link {
  int fd = -1;
  std::unique_ptr<client_detail::tls_link> tls;  // before fd: it is torn down first

  link() = default;
  link(link&& other) noexcept { *this = std::move(other); }
  link& operator=(link&& other) noexcept {
    if (this != &other) {
      close();
      fd = std::exchange(other.fd, -1);
      tls = std::move(other.tls);
      read_buffer = std::move(other.read_buffer);
      policy = other.policy;
      buffered_begin = std::exchange(other.buffered_begin, 0);
      buffered_end = std::exchange(other.buffered_end, 0);
    }
    return *this;
  }
  ~link() { close(); }

  void close() {
    tls.reset();
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  /// Writes a whole frame. Throws remote_error(connection_lost).
  void send_all(const std::vector<std::uint8_t>& frame) {
    if (tls) return tls->write_all(frame.data(), frame.size());
    std::size_t sent = 0;
    while (sent < frame.size()) {
      ssize_t n = ::send(fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(errc::connection_lost, std::string("send failed: ") + std::strerror(errno));
      sent += static_cast<std::size_t>(n);
    }
  }

  /// Reads exactly `size` bytes; waits at most until `deadline` when it is set. With
  /// `busy_poll`, polls before sleeping as `policy` says. One reader at a time.
  std::optional<error> read_exact(std::uint8_t* data, std::size_t size,
                                  std::optional<std::chrono::steady_clock::time_point> deadline, bool busy_poll,
                                  std::size_t* read_so_far = nullptr) {
    std::size_t local_count = 0;
    std::size_t& got = read_so_far ? *read_so_far : local_count;
    if (tls) return tls->read_exact(data, size, deadline, got);
    got = take_buffered(data, size);
    while (got < size) {
      // A large rest goes straight into place; a small one through the buffer, so that one
      // recv brings a whole small reply (header and payload) instead of one per part.
      const bool direct = size - got >= read_buffer_size / 2;
      if (!direct && !read_buffer) read_buffer = std::make_unique_for_overwrite<std::uint8_t[]>(read_buffer_size);
      std::uint8_t* into = direct ? data + got : read_buffer.get();
      const std::size_t room = direct ? size - got : read_buffer_size;
      const auto window = busy_poll ? policy.window_now() : std::chrono::microseconds::zero();
      std::optional<ssize_t> polled = receive_polling(into, room, window);
      ssize_t n;
      if (polled) {
        n = *polled;
      } else {
        const auto slept_from = std::chrono::steady_clock::now();
        if (deadline) {
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - slept_from);
          if (left.count() <= 0) return error{errc::timeout, "no reply in time"};
          pollfd p{fd, POLLIN, 0};
          int r = ::poll(&p, 1, static_cast<int>(left.count()));
          if (r == 0) return error{errc::timeout, "no reply in time"};
          if (r < 0 && errno != EINTR) return error{errc::connection_lost, std::strerror(errno)};
          if (r < 0) continue;
        }
        n = ::recv(fd, into, room, 0);
        if (busy_poll) policy.slept(window.count() > 0, std::chrono::steady_clock::now() - slept_from);
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) return error{errc::connection_lost, "the daemon closed the connection"};
      if (n < 0) return error{errc::connection_lost, std::string("recv failed: ") + std::strerror(errno)};
      if (direct) {
        got += static_cast<std::size_t>(n);
      } else {
        buffered_begin = 0;
        buffered_end = static_cast<std::size_t>(n);
        got += take_buffered(data + got, size - got);
      }
    }
    return std::nullopt;
  }

  /// When to poll before sleeping on plain TCP (the reader's only).
  protocol::busy_poll_policy policy{std::chrono::microseconds::zero()};

 private:
  static constexpr std::size_t read_buffer_size = 64 * 1024;
  // Plain TCP: bytes received ahead of what has been asked for (the reader's only).
  std::unique_ptr<std::uint8_t[]> read_buffer;
  std::size_t buffered_begin = 0;
  std::size_t buffered_end = 0;

  /// Polls the socket for `window`: what recv returned (bytes, 0 at the end, or -1 with
  /// errno), or nothing when no byte came in time.
  std::optional<ssize_t> receive_polling(std::uint8_t* into, std::size_t room, std::chrono::microseconds window) {
    if (window.count() == 0) return std::nullopt;
    const auto until = std::chrono::steady_clock::now() + window;
    do {
      ssize_t n = ::recv(fd, into, room, MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        policy.found_by_polling();
        return n;
      }
    } while (std::chrono::steady_clock::now() < until);
    return std::nullopt;
  }

  /// Moves up to `size` buffered bytes to `data`; how many.
  std::size_t take_buffered(std::uint8_t* data, std::size_t size) {
    const std::size_t n = std::min(size, buffered_end - buffered_begin);
    if (n > 0) std::memcpy(data, read_buffer.get() + buffered_begin, n);
    buffered_begin += n;
    return n;
  }
};

}  // namespace

// Leader/follower on one blocking socket: a caller waiting for its reply either becomes the
// reader (reads frames and hands each to its waiter) or sleeps until a reader hands it its
// reply. A lone sequential caller thus reads its own reply: no thread hop, no extra wakeup.
struct client::impl {
  link conn;  // replaced under write_mutex (and state_mutex) by resume()
  std::string host;
  std::uint16_t port = 0;
  client_options options;
  protocol::welcome_message welcome;  // replaced under state_mutex by resume()

  std::mutex connect_mutex;  // one resume at a time

  std::mutex heartbeat_mutex;  // guards closing
  std::condition_variable heartbeat_wake;
  bool closing = false;
  std::thread heartbeat_thread;

  std::mutex write_mutex;  // serializes whole frames on the socket

  std::mutex state_mutex;  // guards pending, reader_active, broken, next_id
  std::condition_variable state_changed;
  std::map<std::uint32_t, std::shared_ptr<pending_reply>> pending;
  bool reader_active = false;
  std::optional<error> broken;  // set once the connection is unusable
  std::uint32_t next_id = 1;
  std::atomic<bool> closing_requested{false};  // close() was called: never reconnect
  std::atomic<std::uint64_t> generation{0};    // bumped (under write_mutex) when conn is replaced
  std::atomic<std::int64_t> lease_ms{0};       // the current welcome's lease, for heartbeats

  /// A connection that broke can be replaced, also one that went out of step (bad_frame: a
  /// frame too large for the daemon, which then drops the connection); one that the daemon
  /// refused (busy, auth_failed, tls_required) or that this client closed cannot.
  bool reconnectable() {
    std::lock_guard lock(state_mutex);
    return broken && (broken->code == errc::connection_lost || broken->code == errc::bad_frame) &&
           !closing_requested;
  }

  ~impl() { stop_heartbeats(); }

  void stop_heartbeats() {
    {
      std::lock_guard lock(heartbeat_mutex);
      closing = true;
    }
    heartbeat_wake.notify_all();
    if (heartbeat_thread.joinable() && heartbeat_thread.get_id() != std::this_thread::get_id())
      heartbeat_thread.join();
  }

  /// Pings every third of the lease; after a break, resumes the session when allowed.
  void heartbeat_loop() {
    std::unique_lock lock(heartbeat_mutex);
    while (!closing) {
      auto period = std::max(std::chrono::milliseconds(lease_ms.load() / 3), std::chrono::milliseconds(10));
      if (heartbeat_wake.wait_for(lock, period, [&] { return closing; })) break;
      lock.unlock();
      try {
        if (is_broken()) {
          if (options.reconnect) resume_session();
        } else {
          expect(request(message_type::ping, nullptr, false), message_type::pong);
        }
      } catch (const remote_error&) {
        // the next beat retries; callers see the failure on their own requests
      }
      lock.lock();
    }
  }

  bool is_broken() {
    std::lock_guard lock(state_mutex);
    return broken.has_value();
  }

  /// Opens a connection and says hello on it, before anyone else may use it.
  std::pair<link, protocol::welcome_message> open_connection(const std::string& token) {
    link new_conn;
    new_conn.fd = connect_socket(host, port, options.connect_timeout);
    new_conn.policy = protocol::busy_poll_policy(options.busy_poll);
    auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
    if (!options.tls_ca_file.empty())
      new_conn.tls = std::make_unique<client_detail::tls_link>(
          new_conn.fd, host,
          client_detail::tls_settings{options.tls_ca_file, options.tls_cert_file, options.tls_key_file}, deadline);
    {
      protocol::hello_message hello;
      hello.client_name = options.client_name;
      hello.pid = ::getpid();
      hello.session_token = token;
      if (!options.secret.empty()) hello.client_nonce = protocol::random_nonce();
      new_conn.send_all(protocol::encode_frame(message_type::hello, 1, protocol::to_value(hello)));
      pending_reply reply = read_frame_on(new_conn, deadline);
      if (reply.type == message_type::challenge) {
        // The daemon requires the secret: check its proof first, then give ours.
        auto challenge = protocol::parse_challenge(expect(std::move(reply), message_type::challenge));
        if (!challenge) throw remote_error(challenge.err());
        if (options.secret.empty())
          fail(errc::auth_failed, "the daemon requires a secret: set LABHOST_SECRET or LABHOST_SECRET_FILE");
        if (!protocol::proofs_equal(challenge->server_proof,
                                    protocol::server_proof(options.secret, hello.client_nonce, challenge->server_nonce)))
          fail(errc::auth_failed, "the daemon could not prove it knows the secret");
        protocol::authenticate_message answer{
            protocol::client_proof(options.secret, challenge->server_nonce, hello.client_nonce)};
        new_conn.send_all(protocol::encode_frame(message_type::authenticate, 2, protocol::to_value(answer)));
        reply = read_frame_on(new_conn, deadline);
      }
      auto welcome_message = protocol::parse_welcome(expect(std::move(reply), message_type::welcome));
      if (!welcome_message) throw remote_error(welcome_message.err());
      return {std::move(new_conn), std::move(*welcome_message)};
    }
  }

  /// Reads one whole frame from a connection nobody else uses yet (the handshake).
  pending_reply read_frame_on(link& socket, std::chrono::steady_clock::time_point deadline) {
    std::array<std::uint8_t, protocol::header_size> header_bytes;
    if (auto e = socket.read_exact(header_bytes.data(), header_bytes.size(), deadline, false)) throw remote_error(*e);
    auto header = protocol::parse_header(header_bytes, options.max_frame_bytes);
    if (!header) throw remote_error(header.err());
    pending_reply reply;
    reply.type = header->type;
    reply.payload.resize(header->payload_size);
    if (auto e = socket.read_exact(reply.payload.data(), reply.payload.size(), deadline, false)) throw remote_error(*e);
    return reply;
  }

  /// Replaces a broken connection by a new one that resumes the session.
  bool resume_session() {
    std::lock_guard guard(connect_mutex);
    std::string token;
    {
      std::unique_lock lock(state_mutex);
      if (!broken) return true;  // another thread already resumed it
      state_changed.wait(lock, [&] { return !reader_active; });
      token = welcome.session_token;
    }
    auto [new_conn, new_welcome] = open_connection(token);
    std::lock_guard lock(state_mutex);
    {
      std::lock_guard write_lock(write_mutex);
      conn = std::move(new_conn);
      generation.fetch_add(1);
    }
    welcome = std::move(new_welcome);
    lease_ms = welcome.lease_ms;
    broken.reset();
    return welcome.resumed;
  }

  /// Writes a frame on the connection of `expected_generation`: a request registered before
  /// the connection was replaced must not run on the new one behind its caller's back (the
  /// caller was already told connection_lost).
  void write_all(const std::vector<std::uint8_t>& frame, std::uint64_t expected_generation) {
    std::lock_guard lock(write_mutex);
    if (generation.load() != expected_generation)
      fail(errc::connection_lost, "the connection was replaced before this request was sent");
    conn.send_all(frame);
  }
  /// Reads one frame and hands it to its waiter. Called by the reader only, unlocked.
  /// A failure here breaks the connection for everyone (the stream is out of step).
  std::optional<error> read_one(std::optional<std::chrono::steady_clock::time_point> deadline, bool busy_poll,
                                bool& timed_out) {
    std::array<std::uint8_t, protocol::header_size> header_bytes;
    timed_out = false;
    std::size_t header_read = 0;
    if (auto e = conn.read_exact(header_bytes.data(), header_bytes.size(), deadline, busy_poll, &header_read)) {
      // A timeout before any byte of a frame leaves the stream intact; one inside a header
      // does not (the rest of the frame would be taken for a new one).
      if (e->code == errc::timeout && header_read == 0) timed_out = true;
      return e;
    }
    auto header = protocol::parse_header(header_bytes, options.max_frame_bytes);
    if (!header) return header.err();
    std::vector<std::uint8_t> payload;
    std::optional<value> array;
    constexpr std::size_t array_prefix = 6;  // tag, element type, u32 count
    if (header->type == message_type::result && header->payload_size > array_prefix) {
      // A bulk result (a camera frame) is usually one typed array: read its elements
      // straight into the array that the caller gets, with no intermediate copy.
      payload.resize(array_prefix);
      if (auto e = conn.read_exact(payload.data(), array_prefix, std::nullopt, busy_poll)) return e;
      std::uint32_t count;
      std::memcpy(&count, payload.data() + 2, 4);
      auto type = static_cast<element_type>(payload[1]);
      if (payload[0] == static_cast<std::uint8_t>(value_kind::array) && element_size(type) != 0 &&
          std::uint64_t{count} * element_size(type) == header->payload_size - array_prefix) {
        typed_array a;
        a.type = type;
        a.data.resize(header->payload_size - array_prefix);
        if (auto e = conn.read_exact(a.data.data(), a.data.size(), std::nullopt, busy_poll)) return e;
        array = value(std::move(a));
      } else {
        payload.resize(header->payload_size);
        if (auto e =
                conn.read_exact(payload.data() + array_prefix, payload.size() - array_prefix, std::nullopt, busy_poll))
          return e;
      }
    } else {
      payload.resize(header->payload_size);
      if (auto e = conn.read_exact(payload.data(), payload.size(), std::nullopt, busy_poll)) return e;
    }
    if (header->request_id == 0 && header->type == message_type::error) {
      // Request id 0 is never used by requests: it carries a connection-level error (busy,
      // bad_frame) that the daemon sends just before it closes the connection.
      auto decoded = protocol::decode_payload(payload);
      return decoded ? protocol::parse_error(*decoded) : decoded.err();
    }
    std::lock_guard lock(state_mutex);
    auto it = pending.find(header->request_id);
    if (it != pending.end()) {  // replies nobody waits for (abandoned on timeout) are dropped
      it->second->done = true;
      it->second->type = header->type;
      it->second->payload = std::move(payload);
      it->second->array = std::move(array);
      pending.erase(it);
      state_changed.notify_all();
    }
    return std::nullopt;
  }

  /// Fails every waiting request and stops the reader. `abortive` drops the link the way a
  /// network failure would (the daemon sees a reset, not a close, and keeps the session for
  /// a resume); otherwise the daemon sees an orderly close and ends the session.
  void break_connection(const error& e, bool abortive = false) {  // REQUIRES: state_mutex held
    if (!broken) broken = e;
    for (auto& [id, reply] : pending) {
      reply->done = true;
      reply->failure = *broken;
    }
    pending.clear();
    if (abortive) {
      linger reset{1, 0};  // close() then sends RST
      ::setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      ::shutdown(conn.fd, SHUT_RD);  // wakes a blocked reader without telling the daemon anything
    } else {
      ::shutdown(conn.fd, SHUT_RDWR);
    }
    state_changed.notify_all();
  }

  /// Sends one request and waits for its reply frame; as the reader, polls before sleeping
  /// when `busy_poll` (client_options::busy_poll).
  pending_reply request(message_type type, const value& payload, bool busy_poll = true) {
    if (options.reconnect && closing_requested == false && is_broken() && reconnectable()) resume_session();
    auto reply = std::make_shared<pending_reply>();
    std::uint32_t id;
    std::uint64_t sent_on;
    {
      std::lock_guard lock(state_mutex);
      if (broken) fail(broken->code, broken->message);
      id = next_id++;
      if (next_id == 0) next_id = 1;
      pending[id] = reply;
      sent_on = generation.load();
    }
    try {
      write_all(protocol::encode_frame(type, id, payload), sent_on);
    } catch (const remote_error& e) {
      std::lock_guard lock(state_mutex);
      break_connection(e.get());
      throw;
    }
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (options.timeout.count() > 0) deadline = std::chrono::steady_clock::now() + options.timeout;

    std::unique_lock lock(state_mutex);
    while (!reply->done) {
      if (deadline && std::chrono::steady_clock::now() >= *deadline) {
        pending.erase(id);
        fail(errc::timeout, "no reply within " + std::to_string(options.timeout.count()) + " ms");
      }
      if (!reader_active) {
        reader_active = true;
        lock.unlock();
        bool timed_out = false;
        auto e = read_one(deadline, busy_poll, timed_out);
        lock.lock();
        reader_active = false;
        state_changed.notify_all();  // let a follower take over reading
        if (e && !timed_out) break_connection(*e);
        continue;
      }
      if (deadline)
        state_changed.wait_until(lock, *deadline);
      else
        state_changed.wait(lock);
    }
    if (reply->failure) fail(reply->failure->code, reply->failure->message);
    return std::move(*reply);
  }

  /// The reply's payload as a value; error replies and unexpected types throw.
  value expect(pending_reply reply, message_type expected) {
    if (reply.array && reply.type == expected) return std::move(*reply.array);
    auto decoded = protocol::decode_payload(reply.payload);
    if (!decoded) throw remote_error(decoded.err());
    if (reply.type == message_type::error) throw remote_error(protocol::parse_error(*decoded));
    if (reply.type != expected)
      fail(errc::bad_message, "expected " + std::string(protocol::message_type_name(expected)) +
                                  ", got " + std::string(protocol::message_type_name(reply.type)));
    return std::move(*decoded);
  }
};


service_address service_address::parse(std::string_view text) {
  std::string_view rest = text;
  if (rest.starts_with("lab://")) rest.remove_prefix(6);
  service_address a;
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    a.service = std::string(rest.substr(slash + 1));
    if (a.service.empty() || a.service.find('/') != std::string::npos)
      fail(errc::bad_address, "\"" + std::string(text) + "\": expected lab://HOST:PORT/SERVICE");
  }
  std::string_view port;
  if (hostport.starts_with("[")) {
    auto close = hostport.find(']');
    if (close == std::string_view::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':')
      fail(errc::bad_address, "\"" + std::string(text) + "\": expected [IPV6]:PORT");
    a.host = std::string(hostport.substr(1, close - 1));
    port = hostport.substr(close + 2);
  } else {
    auto colon = hostport.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      fail(errc::bad_address, "\"" + std::string(text) + "\": expected lab://HOST:PORT/SERVICE");
    a.host = std::string(hostport.substr(0, colon));
    port = hostport.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port)) > 65535 || std::stoul(std::string(port)) == 0)
    fail(errc::bad_address, "\"" + std::string(text) + "\": port must be 1 to 65535");
  a.port = static_cast<std::uint16_t>(std::stoul(std::string(port)));
  return a;
}

std::string service_address::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return "lab://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) +
         (service.empty() ? "" : "/" + service);
}

client::client(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

client::~client() { close(); }

std::shared_ptr<client> client::connect(const std::string& host, std::uint16_t port,
                                        client_options options) {
  auto i = std::make_unique<impl>();
  if (options.client_name.empty()) options.client_name = default_client_name();
  if (options.use_environment) {
    if (options.secret.empty()) options.secret = secret_from_environment();
    if (options.tls_ca_file.empty()) options.tls_ca_file = environment("LABHOST_TLS_CA");
    if (options.tls_cert_file.empty()) options.tls_cert_file = environment("LABHOST_TLS_CERT");
    if (options.tls_key_file.empty()) options.tls_key_file = environment("LABHOST_TLS_KEY");
  }
  i->host = host;
  i->port = port;
  i->options = options;
  auto [conn, welcome] = i->open_connection("");
  i->conn = std::move(conn);
  i->welcome = std::move(welcome);
  i->lease_ms = i->welcome.lease_ms;
  if (options.heartbeats && i->welcome.lease_ms > 0)
    i->heartbeat_thread = std::thread([raw = i.get()] { raw->heartbeat_loop(); });
  return std::make_shared<client>(std::move(i));
}

value client::call(std::string_view service, std::string_view method, list args, map kwargs) {
  protocol::call_message m{std::string(service), std::string(method), std::move(args), std::move(kwargs)};
  return impl_->expect(impl_->request(message_type::call, protocol::to_value(m)), message_type::result);
}

daemon_description client::describe() {
  auto d = protocol::parse_daemon_description(impl_->expect(
      impl_->request(message_type::describe, protocol::to_value(protocol::describe_message{})),
      message_type::description));
  if (!d) throw remote_error(d.err());
  return std::move(*d);
}

service_description client::describe(std::string_view service) {
  auto s = protocol::parse_service_description(
      impl_->expect(impl_->request(message_type::describe,
                                   protocol::to_value(protocol::describe_message{std::string(service)})),
                    message_type::description));
  if (!s) throw remote_error(s.err());
  return std::move(*s);
}

std::chrono::microseconds client::ping() {
  auto start = std::chrono::steady_clock::now();
  impl_->expect(impl_->request(message_type::ping, nullptr), message_type::pong);
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
}

std::string client::session_token() const {
  std::lock_guard lock(impl_->state_mutex);
  return impl_->welcome.session_token;
}
std::string client::daemon_name() const {
  std::lock_guard lock(impl_->state_mutex);
  return impl_->welcome.daemon;
}
std::chrono::milliseconds client::lease() const noexcept {
  return std::chrono::milliseconds(impl_->lease_ms.load());
}

namespace {
lock_info to_lock_info(const value& v) {
  auto r = protocol::parse_lock_report(v);
  if (!r) throw remote_error(r.err());
  return lock_info{r->service, r->locked, r->yours, r->holder_name, r->holder_pid,
                   r->holder_address, r->since, r->lease_left_ms};
}
}  // namespace

lock_info client::lock(std::string_view service, std::chrono::milliseconds wait) {
  protocol::lock_message m{std::string(service), wait.count()};
  return to_lock_info(impl_->expect(impl_->request(message_type::lock, protocol::to_value(m)), message_type::result));
}

void client::unlock(std::string_view service) {
  protocol::unlock_message m{std::string(service), false, ""};
  impl_->expect(impl_->request(message_type::unlock, protocol::to_value(m)), message_type::result);
}

void client::force_unlock(std::string_view service, std::string_view admin_secret) {
  protocol::unlock_message m{std::string(service), true, std::string(admin_secret)};
  impl_->expect(impl_->request(message_type::unlock, protocol::to_value(m)), message_type::result);
}

std::vector<lock_info> client::lock_status(std::string_view service) {
  protocol::lock_status_message m{std::string(service)};
  value reports = impl_->expect(impl_->request(message_type::lock_status, protocol::to_value(m)),
                                message_type::result);
  if (!reports.is_list()) throw remote_error(error{errc::bad_message, "lock_status: expected a list"});
  std::vector<lock_info> out;
  for (const auto& r : reports.as_list()) out.push_back(to_lock_info(r));
  return out;
}

bool client::resume() {
  {
    std::lock_guard lock(impl_->state_mutex);
    if (!impl_->broken) {
      // Drop the current connection on purpose so the session is resumed on a new one.
      impl_->break_connection(error{errc::connection_lost, "reconnecting"}, true);
    }
  }
  return impl_->resume_session();
}

void client::close() {
  impl_->closing_requested = true;
  impl_->stop_heartbeats();
  std::lock_guard lock(impl_->state_mutex);
  if (impl_->broken) return;
  try {
    impl_->write_all(protocol::encode_frame(message_type::goodbye, 0, nullptr), impl_->generation.load());
    if (impl_->conn.tls) impl_->conn.tls->close_notify();
  } catch (const remote_error&) {
    // already gone: nothing to say goodbye to
  }
  impl_->break_connection(error{errc::connection_lost, "the client closed this connection"});
}

service_proxy service_proxy::connect(std::string_view address, client_options options) {
  auto a = service_address::parse(address);
  if (a.service.empty())
    fail(errc::bad_address, "\"" + std::string(address) + "\" names no service (lab://HOST:PORT/SERVICE)");
  return service_proxy(client::connect(a.host, a.port, std::move(options)), a.service);
}

std::string default_client_name() {
  std::string user = "unknown";
  if (const passwd* pw = ::getpwuid(::getuid())) user = pw->pw_name;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return user + "@" + host;
}

std::string default_nameserver() {
  const char* env = std::getenv("LABHOST_NS");
  return env && *env ? env : "127.0.0.1:7700";
}

namespace {

std::shared_ptr<client> connect_nameserver(std::string_view nameserver, client_options options) {
  std::string where = nameserver.empty() ? default_nameserver() : std::string(nameserver);
  auto a = service_address::parse(where);
  options.heartbeats = false;  // one short question
  return client::connect(a.host, a.port, std::move(options));
}

name_record to_record(const value& v) {
  name_record r;
  if (const value* name = v.find("name"); name && name->is_string()) r.name = name->as_string();
  if (const value* address = v.find("address"); address && address->is_string()) r.address = address->as_string();
  if (const value* owner = v.find("owner"); owner && owner->is_string()) r.owner = owner->as_string();
  if (const value* metadata = v.find("metadata")) r.metadata = *metadata;
  if (r.name.empty() || r.address.empty()) fail(errc::bad_message, "nameserver: malformed name record");
  return r;
}

}  // namespace

std::vector<name_record> list_names(std::string_view nameserver, std::string_view prefix, client_options options) {
  auto ns = connect_nameserver(nameserver, std::move(options));
  value found = ns->call("nameserver", "list", {std::string(prefix)});
  if (!found.is_list()) fail(errc::bad_message, "nameserver: list did not return a list");
  std::vector<name_record> out;
  for (const auto& entry : found.as_list()) out.push_back(to_record(entry));
  return out;
}

service_address resolve_name(std::string_view name, std::string_view nameserver, client_options options) {
  auto ns = connect_nameserver(nameserver, std::move(options));
  return service_address::parse(to_record(ns->call("nameserver", "lookup", {std::string(name)})).address);
}

service_proxy locate(std::string_view name, std::string_view nameserver, client_options options) {
  auto a = resolve_name(name, nameserver, options);
  return service_proxy(client::connect(a.host, a.port, std::move(options)), a.service);
}

}  // namespace labhost
