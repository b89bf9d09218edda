// client.cpp: the public C++ client API (labhost/client.h) over the session layer
// (session.h, multiplexer.h, transport.h; docs/clients.md).
#include "labhost/client.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>

#include "../protocol/address.h"
#include "../protocol/messages.h"
#include "session.h"

namespace labhost {

using protocol::message_type;

namespace {

[[noreturn]] void fail(errc code, std::string message) { throw remote_error(error{code, std::move(message)}); }

}  // namespace

struct client::impl {
  impl(const std::string& host, std::uint16_t port, client_options options)
      : session(host, port, client_detail::with_defaults(std::move(options))) {}
  client_detail::session session;

  value request(message_type type, const value& payload, message_type expected,
                std::chrono::milliseconds extra_wait = std::chrono::milliseconds::zero()) {
    return client_detail::payload_of(session.request(type, payload, extra_wait), expected);
  }
};

service_address service_address::parse(std::string_view text) {
  auto parsed = protocol::parse_service_address(text);
  if (!parsed) throw remote_error(parsed.err());
  return service_address{std::move(parsed->daemon.host), parsed->daemon.port, std::move(parsed->service)};
}

std::string service_address::to_string() const {
  return protocol::service_location{{host, port}, service}.to_string();
}

client::client(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

client::~client() { close(); }

std::shared_ptr<client> client::connect(const std::string& host, std::uint16_t port, client_options options) {
  return std::make_shared<client>(std::make_unique<impl>(host, port, std::move(options)));
}

value client::call(std::string_view service, std::string_view method, list args, map kwargs) {
  protocol::call_message m{std::string(service), std::string(method), std::move(args), std::move(kwargs)};
  return impl_->request(message_type::call, protocol::to_value(m), message_type::result);
}

void client::call_async(std::string_view service, std::string_view method, list args, map kwargs,
                        std::function<void(result<value>)> done) {
  protocol::call_message m{std::string(service), std::string(method), std::move(args), std::move(kwargs)};
  impl_->session.request_async(message_type::call, protocol::to_value(m),
                               [done = std::move(done)](result<client_detail::reply_frame> reply) {
                                 if (!reply) return done(reply.err());
                                 try {
                                   done(client_detail::payload_of(std::move(*reply), message_type::result));
                                 } catch (const remote_error& e) {
                                   done(e.get());
                                 }
                               });
}

std::future<value> client::call_async(std::string_view service, std::string_view method, list args, map kwargs) {
  auto promise = std::make_shared<std::promise<value>>();
  auto future = promise->get_future();
  call_async(service, method, std::move(args), std::move(kwargs), [promise](result<value> r) {
    if (r)
      promise->set_value(std::move(*r));
    else
      promise->set_exception(std::make_exception_ptr(remote_error(r.err())));
  });
  return future;
}

void client::call_oneway(std::string_view service, std::string_view method, list args, map kwargs) {
  protocol::call_message m{std::string(service), std::string(method), std::move(args), std::move(kwargs)};
  m.oneway = true;
  impl_->session.send_oneway(message_type::call, protocol::to_value(m));
}

std::uint64_t client::oneway_failures() const noexcept { return impl_->session.oneway_failures(); }

std::int64_t client::protocol_version() const { return impl_->session.version(); }

// --- Subscriptions.

struct subscription::state {
  std::mutex mutex;  // guards everything below; with arrived
  std::condition_variable arrived;
  std::deque<event> queue;
  std::size_t capacity = 16;
  std::uint64_t dropped = 0;  // by the daemon and by this queue
  std::optional<error> ended;
  std::function<void(const event&)> callback;  // set: events go there, not to the queue
  std::vector<std::vector<std::uint8_t>> spare;  // array memory given back (recycle)

  /// A buffer for an array of `size` bytes: one given back of exactly that size (nothing to
  /// zero-fill), else the largest, else none.
  std::vector<std::uint8_t> take_spare(std::size_t size) {
    std::lock_guard lock(mutex);
    if (spare.empty()) return {};
    auto it = std::find_if(spare.begin(), spare.end(), [&](const auto& b) { return b.size() == size; });
    if (it == spare.end()) it = spare.begin();
    auto out = std::move(*it);
    spare.erase(it);
    return out;
  }

  /// From the client's reader: one event, or the end.
  void deliver(result<protocol::event_message> e) {
    std::unique_lock lock(mutex);
    if (!e) {
      if (!ended) ended = e.err();
      arrived.notify_all();
      return;
    }
    dropped += static_cast<std::uint64_t>(std::max<std::int64_t>(0, e->dropped));
    event received{static_cast<std::uint32_t>(e->subscription), e->seq, e->dropped, e->time, std::move(e->data)};
    if (callback) {
      auto call = callback;
      lock.unlock();
      call(received);
      return;
    }
    queue.push_back(std::move(received));
    if (queue.size() > capacity) {  // next() is not keeping up: the oldest goes, counted
      queue.pop_front();
      ++dropped;
    }
    arrived.notify_all();
  }
};

subscription::subscription(std::shared_ptr<client> owner, std::uint32_t id, std::string topic, std::string type,
                           std::shared_ptr<state> s)
    : owner_(std::move(owner)), id_(id), topic_(std::move(topic)), type_(std::move(type)), state_(std::move(s)) {}

subscription::~subscription() {
  try {
    unsubscribe();
  } catch (const remote_error&) {
    // the daemon is gone, and with it the subscription
  }
}

std::optional<event> subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  state_->arrived.wait_for(lock, timeout, [&] { return !state_->queue.empty() || state_->ended; });
  if (!state_->queue.empty()) {
    event e = std::move(state_->queue.front());
    state_->queue.pop_front();
    return e;
  }
  if (state_->ended) throw remote_error(*state_->ended);
  return std::nullopt;
}

void subscription::unsubscribe() {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->ended) return;
    state_->ended = error{errc::connection_lost, "unsubscribed"};
    state_->arrived.notify_all();
  }
  owner_->impl_->session.remove_subscription(id_);
  owner_->impl_->request(message_type::unsubscribe, protocol::to_value(protocol::unsubscribe_message{id_}),
                         message_type::result);
}

void subscription::recycle(event&& done) {
  if (!done.data.is_array()) return;
  constexpr std::size_t kept = 4;
  std::lock_guard lock(state_->mutex);
  if (state_->spare.size() < kept) state_->spare.push_back(std::move(done.data.as_array().data));
}

std::uint64_t subscription::dropped() const {
  std::lock_guard lock(state_->mutex);
  return state_->dropped;
}

std::unique_ptr<subscription> client::subscribe(std::string_view service, std::string_view topic,
                                                subscribe_options options) {
  return subscribe(service, topic, nullptr, options);
}

std::unique_ptr<subscription> client::subscribe(std::string_view service, std::string_view topic,
                                                std::function<void(const event&)> on_event,
                                                subscribe_options options) {
  if (impl_->session.version() < 2)
    fail(errc::unsupported_version, "the daemon speaks protocol version 1: no events (subscribe to " +
                                        std::string(topic) + ")");
  protocol::subscribe_message m{std::string(service), std::string(topic),
                                static_cast<std::int64_t>(options.queue), options.max_rate};
  auto report = protocol::parse_subscription_report(
      impl_->request(message_type::subscribe, protocol::to_value(m), message_type::result));
  if (!report) throw remote_error(report.err());
  auto s = std::make_shared<subscription::state>();
  s->capacity = std::max<std::size_t>(1, options.queue);
  s->callback = std::move(on_event);
  const auto id = static_cast<std::uint32_t>(report->subscription);
  impl_->session.add_subscription(
      id, [s](result<protocol::event_message> e) { s->deliver(std::move(e)); },
      [weak = std::weak_ptr<subscription::state>(s)](std::size_t size) {
        auto state = weak.lock();
        return state ? state->take_spare(size) : std::vector<std::uint8_t>();
      });
  return std::make_unique<subscription>(shared_from_this(), id, report->topic, report->type, s);
}

daemon_description client::describe() {
  auto d = protocol::parse_daemon_description(
      impl_->request(message_type::describe, protocol::to_value(protocol::describe_message{}), message_type::description));
  if (!d) throw remote_error(d.err());
  return std::move(*d);
}

value client::daemon_stats() {
  protocol::describe_message m;
  m.stats = true;
  value d = impl_->request(message_type::describe, protocol::to_value(m), message_type::description);
  const value* stats = d.find("stats");
  if (stats == nullptr) fail(errc::bad_message, "the daemon gave no figures (a daemon older than this client?)");
  return *stats;
}

service_description client::describe(std::string_view service) {
  auto s = protocol::parse_service_description(impl_->request(
      message_type::describe, protocol::to_value(protocol::describe_message{std::string(service)}),
      message_type::description));
  if (!s) throw remote_error(s.err());
  return std::move(*s);
}

std::chrono::microseconds client::ping() {
  auto start = std::chrono::steady_clock::now();
  impl_->request(message_type::ping, nullptr, message_type::pong);
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
}

std::string client::session_token() const { return impl_->session.token(); }
std::string client::daemon_name() const { return impl_->session.daemon_name(); }
std::chrono::milliseconds client::lease() const noexcept { return impl_->session.lease(); }

namespace {
lock_info to_lock_info(const value& v) {
  auto r = protocol::parse_lock_report(v);
  if (!r) throw remote_error(r.err());
  return lock_info{r->service, r->locked, r->yours, r->holder_name, r->holder_pid,
                   r->holder_address, r->since, r->lease_left_ms};
}
}  // namespace

lock_info client::lock(std::string_view service, std::chrono::milliseconds wait) {
  if (wait.count() < 0) wait = std::chrono::milliseconds::zero();
  protocol::lock_message m{std::string(service), wait.count()};
  // Rule 2: the daemon answers by itself when the wait runs out, so the reply is awaited
  // for the timeout plus the wait.
  return to_lock_info(impl_->request(message_type::lock, protocol::to_value(m), message_type::result, wait));
}

void client::unlock(std::string_view service) {
  protocol::unlock_message m{std::string(service), false, ""};
  impl_->request(message_type::unlock, protocol::to_value(m), message_type::result);
}

void client::force_unlock(std::string_view service, std::string_view admin_secret) {
  protocol::unlock_message m{std::string(service), true, std::string(admin_secret)};
  impl_->request(message_type::unlock, protocol::to_value(m), message_type::result);
}

std::vector<lock_info> client::lock_status(std::string_view service) {
  protocol::lock_status_message m{std::string(service)};
  value reports = impl_->request(message_type::lock_status, protocol::to_value(m), message_type::result);
  if (!reports.is_list()) fail(errc::bad_message, "lock_status: expected a list");
  // Rule 7: one service asked about, one report.
  if (!service.empty() && reports.as_list().size() != 1)
    fail(errc::bad_message, "lock_status: expected one report for " + std::string(service) + ", got " +
                                std::to_string(reports.as_list().size()));
  std::vector<lock_info> out;
  for (const auto& r : reports.as_list()) out.push_back(to_lock_info(r));
  return out;
}

bool client::resume() { return impl_->session.resume(); }

void client::close() { impl_->session.close(); }

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
