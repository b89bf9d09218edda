#include "session.h"

#include <unistd.h>

#include <cstdlib>

#include "../protocol/auth.h"
#include "../protocol/secret_file.h"

namespace labhost::client_detail {

using protocol::message_type;

namespace {

[[noreturn]] void fail(errc code, std::string message) { throw remote_error(error{code, std::move(message)}); }

std::string environment(const char* name) {
  const char* text = std::getenv(name);
  return text ? text : "";
}

/// $LABHOST_SECRET, else the secret in the file $LABHOST_SECRET_FILE, else none.
std::string secret_from_environment() {
  if (auto secret = environment("LABHOST_SECRET"); !secret.empty()) return secret;
  const std::string file = environment("LABHOST_SECRET_FILE");
  if (file.empty()) return {};
  auto secret = protocol::read_secret_file(file);
  if (!secret) fail(errc::auth_failed, "LABHOST_SECRET_FILE: " + secret.err().message);
  return std::move(*secret);
}

/// The reply to a handshake message, on a link nobody else uses yet.
reply_frame read_handshake_frame(transport& link, std::uint32_t max_frame_bytes,
                                 std::chrono::steady_clock::time_point deadline) {
  std::array<std::uint8_t, protocol::header_size> header_bytes;
  if (auto e = link.read_exact(header_bytes.data(), header_bytes.size(), deadline, false)) throw remote_error(*e);
  auto header = protocol::parse_header(header_bytes, max_frame_bytes);
  if (!header) throw remote_error(header.err());
  reply_frame reply;
  reply.type = header->type;
  reply.payload.resize(header->payload_size);
  if (auto e = link.read_exact(reply.payload.data(), reply.payload.size(), deadline, false)) throw remote_error(*e);
  return reply;
}

/// Refusals that a new connection would only repeat (docs/clients.md, rule 3).
bool is_refusal(errc code) noexcept {
  return code == errc::auth_failed || code == errc::tls_required || code == errc::unsupported_version;
}

}  // namespace

client_options with_defaults(client_options options) {
  if (options.client_name.empty()) options.client_name = default_client_name();
  if (options.use_environment) {
    if (options.secret.empty()) options.secret = secret_from_environment();
    if (options.tls_ca_file.empty()) options.tls_ca_file = environment("LABHOST_TLS_CA");
    if (options.tls_cert_file.empty()) options.tls_cert_file = environment("LABHOST_TLS_CERT");
    if (options.tls_key_file.empty()) options.tls_key_file = environment("LABHOST_TLS_KEY");
  }
  return options;
}

result<protocol::event_message> event_of(reply_frame frame) {
  if (frame.array) {  // the value was read in place after the envelope
    auto event = protocol::read_event_envelope(frame.payload);
    if (!event) return error{errc::bad_message, "event: malformed envelope"};
    event->data = std::move(*frame.array);
    return std::move(*event);
  }
  auto decoded = protocol::decode_payload(frame.payload);
  if (!decoded) return decoded.err();
  return protocol::parse_event(std::move(*decoded));
}

value payload_of(reply_frame reply, message_type expected) {
  if (reply.array && reply.type == expected) return std::move(*reply.array);
  auto decoded = protocol::decode_payload(reply.payload);
  if (!decoded) throw remote_error(decoded.err());
  if (reply.type == message_type::error) throw remote_error(protocol::parse_error(*decoded));
  if (reply.type != expected)
    fail(errc::bad_message, "expected " + std::string(protocol::message_type_name(expected)) + ", got " +
                                std::string(protocol::message_type_name(reply.type)));
  return std::move(*decoded);
}

session::session(std::string host, std::uint16_t port, client_options options)
    : host_(std::move(host)), port_(port), options_(std::move(options)), mux_(options_.max_frame_bytes) {
  mux_.on_event([this](std::uint32_t id, reply_frame frame) { route_event(id, std::move(frame)); });
  mux_.on_event_buffer([this](std::uint32_t id, std::size_t size) {
    buffer_source source;
    {
      std::lock_guard lock(async_mutex_);
      if (auto it = subscriptions_.find(id); it != subscriptions_.end()) source = it->second.buffers;
    }
    return source ? source(size) : std::vector<std::uint8_t>();
  });
  mux_.on_oneway_failure([this](const error& e) {
    ++oneway_failures_;
    if (options_.on_oneway_error) options_.on_oneway_error(e);
  });
  auto [link, welcome] = open_link("");
  link.bound_silence(std::chrono::milliseconds(welcome.lease_ms));
  mux_.replace(std::move(link));
  lease_ms_ = welcome.lease_ms;
  welcome_ = std::move(welcome);
  if (options_.heartbeats && lease_ms_.load() > 0) heartbeat_thread_ = std::thread([this] { heartbeat_loop(); });
}

session::~session() {
  close();
  if (pump_thread_.joinable()) pump_thread_.detach();  // closed from its own callback: it leaves by itself
}

std::pair<transport, protocol::welcome_message> session::open_link(const std::string& token) {
  const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
  transport_settings settings;
  settings.connect_timeout = options_.connect_timeout;
  settings.tls = {options_.tls_ca_file, options_.tls_cert_file, options_.tls_key_file};
  settings.busy_poll = options_.tls_ca_file.empty() ? options_.busy_poll : std::chrono::microseconds::zero();
  transport link = transport::connect(host_, port_, settings, deadline);

  protocol::hello_message hello;
  hello.client_name = options_.client_name;
  hello.pid = ::getpid();
  hello.min_version = protocol::oldest_protocol_version;
  hello.max_version = protocol::protocol_version;
  hello.session_token = token;
  if (!options_.secret.empty()) hello.client_nonce = protocol::random_nonce();
  auto send = [&](message_type type, std::uint32_t id, const value& payload) {
    if (auto failure = link.send(protocol::encode_frame(type, id, payload)).failure) throw remote_error(*failure);
  };
  send(message_type::hello, 1, protocol::to_value(hello));
  reply_frame reply = read_handshake_frame(link, options_.max_frame_bytes, deadline);
  if (reply.type == message_type::challenge) {
    // The daemon requires the secret: check its proof first (an impostor learns nothing from
    // us), then give ours.
    auto challenge = protocol::parse_challenge(payload_of(std::move(reply), message_type::challenge));
    if (!challenge) throw remote_error(challenge.err());
    if (options_.secret.empty())
      fail(errc::auth_failed, "the daemon requires a secret: set LABHOST_SECRET or LABHOST_SECRET_FILE");
    if (!protocol::proofs_equal(challenge->server_proof,
                                protocol::server_proof(options_.secret, hello.client_nonce, challenge->server_nonce)))
      fail(errc::auth_failed, "the daemon could not prove it knows the secret");
    protocol::authenticate_message answer{
        protocol::client_proof(options_.secret, challenge->server_nonce, hello.client_nonce)};
    send(message_type::authenticate, 2, protocol::to_value(answer));
    reply = read_handshake_frame(link, options_.max_frame_bytes, deadline);
  }
  auto welcome = protocol::parse_welcome(payload_of(std::move(reply), message_type::welcome));
  if (!welcome) throw remote_error(welcome.err());
  return {std::move(link), std::move(*welcome)};
}

bool session::may_reconnect(const error& e) const noexcept { return !closing_ && !is_refusal(e.code); }

bool session::reconnect(bool on_demand) {
  std::lock_guard guard(connect_mutex_);
  if (closing_) fail(errc::connection_lost, "the client closed this connection");
  auto broken = mux_.broken();
  if (!broken) {  // another thread mended it meanwhile
    std::lock_guard lock(welcome_mutex_);
    return welcome_.resumed;
  }
  if (!on_demand && !may_reconnect(*broken)) throw remote_error(*broken);
  std::pair<transport, protocol::welcome_message> fresh;
  try {
    fresh = open_link(token());
  } catch (const remote_error& e) {
    // Refused: a new connection would be refused again, so no reconnecting by itself after
    // this (resume() still tries).
    if (is_refusal(e.code())) mux_.mark_broken(e.get());
    throw;
  }
  fresh.first.bound_silence(std::chrono::milliseconds(fresh.second.lease_ms));
  mux_.replace(std::move(fresh.first));
  lease_ms_ = fresh.second.lease_ms;
  const bool resumed = fresh.second.resumed;
  {
    std::lock_guard lock(welcome_mutex_);
    welcome_ = std::move(fresh.second);
  }
  // A new session has none of the old one's subscriptions: their streams end here.
  if (!resumed)
    fail_subscriptions(error{errc::connection_lost, "the daemon no longer had this session (it restarted, or the "
                                                    "lease passed): its subscriptions ended"});
  return resumed;
}

reply_frame session::request(message_type type, const value& payload, std::chrono::milliseconds extra_wait,
                             bool busy_poll, std::optional<std::chrono::milliseconds> timeout) {
  multiplexer::ticket sent_request = send_request(type, payload, true);
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const auto bound = timeout.value_or(options_.timeout);
  const auto allowed = bound + extra_wait;
  if (bound.count() > 0) deadline = std::chrono::steady_clock::now() + allowed;
  return mux_.wait(std::move(sent_request), deadline, allowed, busy_poll);
}

multiplexer::ticket session::send_request(message_type type, const value& payload, bool expect_reply) {
  for (int attempt = 1;; ++attempt) {
    if (closing_) fail(errc::connection_lost, "the client closed this connection");
    // Rule 5: a link the daemon closed while it was idle is replaced before, not after, the
    // request is lost on it.
    if (mux_.idle_link_closed())
      mux_.break_link(error{errc::connection_lost, "the daemon closed the connection"}, true);
    if (options_.reconnect)
      if (auto broken = mux_.broken(); broken && may_reconnect(*broken)) reconnect(false);
    auto sent = mux_.send(type, payload, expect_reply);
    if (sent) return std::move(*sent);
    // Rule 4: not a byte of it went out, so it surely did not run: once more on a new link.
    if (sent.err().sent_any || attempt == 2 || !options_.reconnect || !may_reconnect(sent.err().failure))
      throw remote_error(sent.err().failure);
  }
}

void session::request_async(message_type type, const value& payload, completion done) {
  async_request r;
  r.ticket = send_request(type, payload, true);
  if (options_.timeout.count() > 0) r.deadline = std::chrono::steady_clock::now() + options_.timeout;
  r.done = std::move(done);
  std::lock_guard lock(async_mutex_);
  async_requests_.push_back(std::move(r));
  ensure_pump_locked();
}

void session::send_oneway(message_type type, const value& payload) { send_request(type, payload, false); }

std::int64_t session::version() const {
  std::lock_guard lock(welcome_mutex_);
  return welcome_.version;
}

void session::add_subscription(std::uint32_t id, event_handler handler, buffer_source buffers) {
  std::vector<reply_frame> early;
  {
    std::lock_guard lock(async_mutex_);
    if (auto it = unclaimed_events_.find(id); it != unclaimed_events_.end()) {
      early = std::move(it->second);
      unclaimed_count_ -= early.size();
      for (const auto& f : early)
        unclaimed_bytes_ -= f.payload.size() + (f.array ? f.array->as_array().data.size() : 0);
      unclaimed_events_.erase(it);
    }
    subscriptions_[id] = subscriber{handler, std::move(buffers)};
    retired_subscriptions_.erase(id);
    ensure_pump_locked();
  }
  for (auto& frame : early) handler(event_of(std::move(frame)));
}

void session::remove_subscription(std::uint32_t id) {
  std::lock_guard lock(async_mutex_);
  if (subscriptions_.erase(id) != 0) retired_subscriptions_.insert(id);  // its late events are dropped
}

void session::route_event(std::uint32_t id, reply_frame frame) {
  event_handler handler;
  {
    std::lock_guard lock(async_mutex_);
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end()) {
      if (retired_subscriptions_.count(id) != 0) return;  // unsubscribed: on its way before that
      // The subscribe reply was read, but its caller has not taken it yet: keep a few.
      constexpr std::size_t unclaimed_kept = 64;
      constexpr std::size_t unclaimed_bytes_kept = 64u << 20;
      const std::size_t bytes = frame.payload.size() + (frame.array ? frame.array->as_array().data.size() : 0);
      if (unclaimed_count_ < unclaimed_kept && unclaimed_bytes_ + bytes <= unclaimed_bytes_kept) {
        unclaimed_events_[id].push_back(std::move(frame));
        ++unclaimed_count_;
        unclaimed_bytes_ += bytes;
      }
      return;
    }
    handler = it->second.handler;
  }
  handler(event_of(std::move(frame)));
}

void session::fail_subscriptions(const error& e) {
  std::map<std::uint32_t, subscriber> ended;
  {
    std::lock_guard lock(async_mutex_);
    ended.swap(subscriptions_);
    unclaimed_events_.clear();
    unclaimed_count_ = 0;
    unclaimed_bytes_ = 0;
  }
  for (auto& [id, s] : ended) s.handler(e);
}

void session::ensure_pump_locked() {
  if (pump_running_ || closing_) return;
  if (pump_thread_.joinable()) pump_thread_.join();  // the last one has left (pump_running_ false)
  pump_running_ = true;
  pump_thread_ = std::thread([this] { pump_loop(); });
}

void session::complete_async() {
  std::vector<std::pair<completion, result<reply_frame>>> finished;
  {
    std::lock_guard lock(async_mutex_);
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(async_requests_, [&](async_request& r) {
      if (auto outcome = mux_.take_if_done(r.ticket)) {
        finished.emplace_back(std::move(r.done), std::move(*outcome));
        return true;
      }
      if (r.deadline && now >= *r.deadline) {
        mux_.abandon(r.ticket);
        finished.emplace_back(std::move(r.done), error{errc::timeout, "no reply within " +
                                                                          std::to_string(options_.timeout.count()) + " ms"});
        return true;
      }
      return false;
    });
  }
  for (auto& [done, outcome] : finished) done(std::move(outcome));
}

void session::pump_loop() {
  auto retry_after = std::chrono::milliseconds(100);
  while (true) {
    {
      std::unique_lock lock(async_mutex_);
      if (closing_ || (async_requests_.empty() && subscriptions_.empty())) {
        pump_running_ = false;
        break;
      }
    }
    if (mux_.pump(std::chrono::steady_clock::now() + std::chrono::milliseconds(100))) {
      retry_after = std::chrono::milliseconds(100);
      complete_async();
      continue;
    }
    complete_async();  // the break failed every request in flight
    auto broken = mux_.broken();
    if (!broken) continue;
    if (!options_.reconnect || !may_reconnect(*broken)) {
      fail_subscriptions(*broken);
      continue;
    }
    try {
      reconnect(false);
    } catch (const remote_error& e) {
      if (!may_reconnect(e.get()) || closing_) {
        fail_subscriptions(e.get());
        continue;
      }
      // Not reachable yet: again a little later (a daemon restarting), unless closed.
      std::unique_lock lock(async_mutex_);
      async_wake_.wait_for(lock, retry_after, [&] { return closing_.load(); });
      retry_after = std::min(retry_after * 2, std::chrono::milliseconds(2000));
    }
  }
}

bool session::resume() {
  if (closing_) fail(errc::connection_lost, "the client closed this connection");
  if (!mux_.broken()) mux_.break_link(error{errc::connection_lost, "reconnecting"}, true);
  return reconnect(true);
}

void session::close() {
  if (closing_.exchange(true)) return;
  {
    std::lock_guard guard(connect_mutex_);  // after a reconnect under way: it leaves no link open
    if (!mux_.broken()) mux_.send_goodbye(protocol::encode_frame(message_type::goodbye, 0, nullptr));
    mux_.break_link(error{errc::connection_lost, "the client closed this connection"}, false);
  }
  // After the break: a heartbeat waiting for a pong from a daemon that stopped answering
  // is woken by it, rather than holding close() up.
  stop_heartbeats();
  {
    std::lock_guard lock(async_mutex_);
  }
  async_wake_.notify_all();
  if (pump_thread_.joinable() && pump_thread_.get_id() != std::this_thread::get_id()) pump_thread_.join();
  complete_async();  // what was still in flight failed with the break
  fail_subscriptions(error{errc::connection_lost, "the client closed this connection"});
}

std::string session::token() const {
  std::lock_guard lock(welcome_mutex_);
  return welcome_.session_token;
}

std::string session::daemon_name() const {
  std::lock_guard lock(welcome_mutex_);
  return welcome_.daemon;
}

void session::stop_heartbeats() {
  {
    std::lock_guard lock(heartbeat_mutex_);
    heartbeats_stopped_ = true;
  }
  heartbeat_wake_.notify_all();
  if (heartbeat_thread_.joinable() && heartbeat_thread_.get_id() != std::this_thread::get_id())
    heartbeat_thread_.join();
}

void session::heartbeat_loop() {
  // Rule 6: a ping whenever nothing else was sent for a third of the lease; after a break,
  // a reconnect when rule 3 allows it, retried a period later.
  using clock = std::chrono::steady_clock;
  auto period = [&] { return std::max(std::chrono::milliseconds(lease_ms_.load() / 3), std::chrono::milliseconds(10)); };
  auto next_beat = clock::now() + period();
  std::unique_lock lock(heartbeat_mutex_);
  while (!heartbeat_wake_.wait_until(lock, next_beat, [&] { return heartbeats_stopped_; })) {
    lock.unlock();
    const auto now = clock::now();
    auto broken = mux_.broken();
    if (!broken && mux_.last_sent() + period() > now) {
      next_beat = mux_.last_sent() + period();  // something went out meanwhile
    } else {
      try {
        if (!broken)
          payload_of(request(message_type::ping, nullptr, std::chrono::milliseconds::zero(), false), message_type::pong);
        else if (options_.reconnect && may_reconnect(*broken))
          reconnect(false);
      } catch (const remote_error&) {
        // the next beat tries again; callers see the failure on their own requests
      }
      next_beat = std::max(clock::now(), mux_.last_sent()) + period();
    }
    lock.lock();
  }
}

}  // namespace labhost::client_detail
