#include "messages.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace labhost::protocol {
namespace {

/// Reads typed fields out of a message map, remembering the first problem.
class field_reader {
 public:
  field_reader(const value& v, std::string_view message) : v_(v), message_(message) {
    if (!v.is_map()) fail("", "a map");
  }

  std::string text(std::string_view key, bool required = true) {
    const value* f = find(key, required);
    if (f == nullptr) return {};
    if (!f->is_string()) return fail(key, "a string"), std::string{};
    return f->as_string();
  }
  std::int64_t integer(std::string_view key, bool required = true, std::int64_t fallback = 0) {
    const value* f = find(key, required);
    if (f == nullptr) return fallback;
    if (!f->is_int()) return fail(key, "an int64"), 0;
    return f->as_int();
  }
  const value* get(std::string_view key, bool required = true) { return find(key, required); }
  std::vector<std::uint8_t> blob(std::string_view key, bool required = true) {
    const value* f = find(key, required);
    if (f == nullptr) return {};
    if (!f->is_bytes()) return fail(key, "bytes"), std::vector<std::uint8_t>{};
    return f->as_bytes().data;
  }
  bool boolean(std::string_view key, bool required = true, bool fallback = false) {
    const value* f = find(key, required);
    if (f == nullptr) return fallback;
    if (!f->is_bool()) return fail(key, "a bool"), false;
    return f->as_bool();
  }
  double number(std::string_view key, bool required = true, double fallback = 0) {
    const value* f = find(key, required);
    if (f == nullptr) return fallback;
    if (!f->is_number()) return fail(key, "a number"), 0.0;
    return f->as_number();
  }

  void fail(std::string_view key, std::string_view expected) {
    if (problem_.empty())
      problem_ = std::string(message_) + (key.empty() ? "" : "." + std::string(key)) +
                 ": expected " + std::string(expected);
  }
  bool ok() const { return problem_.empty(); }
  error err() const { return error{errc::bad_message, problem_}; }

 private:
  const value* find(std::string_view key, bool required) {
    if (!v_.is_map()) return nullptr;
    const value* f = v_.find(key);
    if (f == nullptr && required) fail(key, "a value");
    return f;
  }

  const value& v_;
  std::string_view message_;
  std::string problem_;
};

}  // namespace

value to_value(const hello_message& m) {
  return map{{"client_name", m.client_name},
             {"pid", m.pid},
             {"min_version", m.min_version},
             {"max_version", m.max_version},
             {"session_token", m.session_token},
             {"client_nonce", bytes{m.client_nonce}}};
}

value to_value(const challenge_message& m) {
  return map{{"server_nonce", bytes{m.server_nonce}}, {"server_proof", bytes{m.server_proof}}};
}

value to_value(const authenticate_message& m) { return map{{"client_proof", bytes{m.client_proof}}}; }

value to_value(const welcome_message& m) {
  return map{{"version", m.version},
             {"session_token", m.session_token},
             {"daemon", m.daemon},
             {"server_version", m.server_version},
             {"lease_ms", m.lease_ms},
             {"resumed", m.resumed}};
}

value to_value(const call_message& m) {
  map out{{"service", m.service}, {"method", m.method}, {"args", m.args}, {"kwargs", m.kwargs}};
  if (m.oneway) out.emplace_back("oneway", true);
  return out;
}

value to_value(const subscribe_message& m) {
  return map{{"service", m.service}, {"topic", m.topic}, {"queue", m.queue}, {"max_rate", m.max_rate}};
}

value to_value(const subscription_report& r) {
  return map{{"subscription", r.subscription}, {"service", r.service}, {"topic", r.topic},
             {"type", r.type},                 {"queue", r.queue},     {"max_rate", r.max_rate}};
}

value to_value(const unsubscribe_message& m) { return map{{"subscription", m.subscription}}; }

value to_value(const event_message& m) {
  return map{{"subscription", m.subscription}, {"seq", m.seq}, {"dropped", m.dropped}, {"time", m.time},
             {"value", m.data}};
}

value to_value(const describe_message& m) {
  if (!m.stats) return map{{"service", m.service}};
  return map{{"service", m.service}, {"stats", true}};
}

value to_value(const error& e) {
  return map{{"code", static_cast<std::int64_t>(e.code)},
             {"name", std::string(e.name())},
             {"message", e.message}};
}

value to_value(const lock_message& m) { return map{{"service", m.service}, {"wait_ms", m.wait_ms}}; }

value to_value(const unlock_message& m) {
  return map{{"service", m.service}, {"force", m.force}, {"admin_secret", m.admin_secret}};
}

value to_value(const lock_status_message& m) { return map{{"service", m.service}}; }

value to_value(const lock_report& r) {
  if (!r.locked) return map{{"service", r.service}, {"locked", false}};
  return map{{"service", r.service},
             {"locked", true},
             {"yours", r.yours},
             {"holder", map{{"client_name", r.holder_name},
                            {"pid", r.holder_pid},
                            {"address", r.holder_address}}},
             {"since", r.since},
             {"lease_left_ms", r.lease_left_ms}};
}

value to_value(const service_description& s) {
  list methods;
  for (const auto& m : s.methods) {
    list params;
    for (const auto& p : m.params) params.push_back(map{{"name", p.name}, {"type", p.type}});
    methods.push_back(map{{"name", m.name},
                          {"params", std::move(params)},
                          {"returns", m.returns},
                          {"doc", m.doc},
                          {"oneway", m.oneway}});
  }
  list topics;
  for (const auto& t : s.topics) topics.push_back(map{{"name", t.name}, {"type", t.type}, {"doc", t.doc}});
  return map{{"name", s.name},
             {"driver", s.driver},
             {"driver_version", s.driver_version},
             {"vendor", s.vendor},
             {"description", s.description},
             {"state", s.state},
             {"reason", s.reason},
             {"calls_pending", s.calls_pending},
             {"methods", std::move(methods)},
             {"topics", std::move(topics)}};
}

value to_value(const daemon_description& d) {
  list services;
  for (const auto& s : d.services) services.push_back(to_value(s));
  return map{{"daemon", d.daemon}, {"services", std::move(services)}};
}

result<hello_message> parse_hello(const value& v) {
  field_reader r(v, "hello");
  hello_message m;
  m.client_name = r.text("client_name");
  m.pid = r.integer("pid", false);
  m.min_version = r.integer("min_version");
  m.max_version = r.integer("max_version");
  m.session_token = r.text("session_token", false);
  m.client_nonce = r.blob("client_nonce", false);
  if (!r.ok()) return r.err();
  return m;
}

result<challenge_message> parse_challenge(const value& v) {
  field_reader r(v, "challenge");
  challenge_message m;
  m.server_nonce = r.blob("server_nonce");
  m.server_proof = r.blob("server_proof");
  if (!r.ok()) return r.err();
  return m;
}

result<authenticate_message> parse_authenticate(const value& v) {
  field_reader r(v, "authenticate");
  authenticate_message m;
  m.client_proof = r.blob("client_proof");
  if (!r.ok()) return r.err();
  return m;
}

result<welcome_message> parse_welcome(const value& v) {
  field_reader r(v, "welcome");
  welcome_message m;
  m.version = r.integer("version");
  m.session_token = r.text("session_token");
  m.daemon = r.text("daemon");
  m.server_version = r.text("server_version", false);
  m.lease_ms = r.integer("lease_ms", false);
  m.resumed = r.boolean("resumed", false);
  if (!r.ok()) return r.err();
  return m;
}

result<call_message> parse_call(value&& v) {
  field_reader r(v, "call");
  call_message m;
  m.service = r.text("service");
  m.method = r.text("method");
  m.oneway = r.boolean("oneway", false);
  if (!r.ok()) return r.err();
  // Move the arguments out rather than copy them: they may hold megabytes.
  for (auto& [key, field] : v.as_map()) {
    if (key == "args") {
      if (!field.is_list()) return error{errc::bad_message, "call.args: expected a list"};
      m.args = std::move(field.as_list());
    } else if (key == "kwargs") {
      if (!field.is_map()) return error{errc::bad_message, "call.kwargs: expected a map"};
      m.kwargs = std::move(field.as_map());
    }
  }
  return m;
}

result<describe_message> parse_describe(const value& v) {
  field_reader r(v, "describe");
  describe_message m;
  m.service = r.text("service", false);
  m.stats = r.boolean("stats", false);
  if (!r.ok()) return r.err();
  return m;
}

error parse_error(const value& v) {
  field_reader r(v, "error");
  std::int64_t code = r.integer("code");
  std::string message = r.text("message", false);
  if (!r.ok()) return r.err();
  return error{static_cast<errc>(code), std::move(message)};
}

result<lock_message> parse_lock(const value& v) {
  field_reader r(v, "lock");
  lock_message m;
  m.service = r.text("service");
  m.wait_ms = r.integer("wait_ms", false);
  if (r.ok() && m.wait_ms < 0) r.fail("wait_ms", "a duration >= 0");
  if (!r.ok()) return r.err();
  return m;
}

result<unlock_message> parse_unlock(const value& v) {
  field_reader r(v, "unlock");
  unlock_message m;
  m.service = r.text("service");
  m.force = r.boolean("force", false);
  m.admin_secret = r.text("admin_secret", false);
  if (!r.ok()) return r.err();
  return m;
}

result<lock_status_message> parse_lock_status(const value& v) {
  field_reader r(v, "lock_status");
  lock_status_message m;
  m.service = r.text("service", false);
  if (!r.ok()) return r.err();
  return m;
}

result<lock_report> parse_lock_report(const value& v) {
  field_reader r(v, "lock_report");
  lock_report report;
  report.service = r.text("service");
  report.locked = r.boolean("locked");
  if (report.locked && r.ok()) {
    report.yours = r.boolean("yours", false);
    const value* holder = r.get("holder");
    if (holder == nullptr) return r.err();
    field_reader h(*holder, "lock_report.holder");
    report.holder_name = h.text("client_name");
    report.holder_pid = h.integer("pid", false);
    report.holder_address = h.text("address", false);
    if (!h.ok()) return h.err();
    report.since = r.number("since", false);
    report.lease_left_ms = r.integer("lease_left_ms", false);
  }
  if (!r.ok()) return r.err();
  return report;
}

result<service_description> parse_service_description(const value& v) {
  field_reader r(v, "service");
  service_description s;
  s.name = r.text("name");
  s.driver = r.text("driver", false);
  s.driver_version = r.text("driver_version", false);
  s.vendor = r.text("vendor", false);
  s.description = r.text("description", false);
  s.state = r.text("state", false);
  s.reason = r.text("reason", false);
  s.calls_pending = r.integer("calls_pending", false);
  if (const value* methods = r.get("methods", false); methods && methods->is_list()) {
    for (const auto& mv : methods->as_list()) {
      field_reader mr(mv, "method");
      method_description m;
      m.name = mr.text("name");
      m.returns = mr.text("returns", false);
      m.doc = mr.text("doc", false);
      m.oneway = mr.boolean("oneway", false);
      if (const value* params = mr.get("params", false); params && params->is_list()) {
        for (const auto& pv : params->as_list()) {
          field_reader pr(pv, "param");
          m.params.push_back({pr.text("name"), pr.text("type", false)});
          if (!pr.ok()) return pr.err();
        }
      }
      if (!mr.ok()) return mr.err();
      s.methods.push_back(std::move(m));
    }
  }
  if (const value* topics = r.get("topics", false); topics && topics->is_list()) {
    for (const auto& tv : topics->as_list()) {
      field_reader tr(tv, "topic");
      s.topics.push_back({tr.text("name"), tr.text("type", false), tr.text("doc", false)});
      if (!tr.ok()) return tr.err();
    }
  }
  if (!r.ok()) return r.err();
  return s;
}

result<daemon_description> parse_daemon_description(const value& v) {
  field_reader r(v, "description");
  daemon_description d;
  d.daemon = r.text("daemon");
  const value* services = r.get("services");
  if (!r.ok()) return r.err();
  if (!services->is_list()) return error{errc::bad_message, "description.services: expected a list"};
  for (const auto& sv : services->as_list()) {
    auto s = parse_service_description(sv);
    if (!s) return s.err();
    d.services.push_back(std::move(*s));
  }
  return d;
}

result<subscribe_message> parse_subscribe(const value& v) {
  field_reader r(v, "subscribe");
  subscribe_message m;
  m.service = r.text("service");
  m.topic = r.text("topic");
  if (r.get("queue", false) != nullptr) m.queue = r.integer("queue");
  m.max_rate = r.number("max_rate", false);
  if (r.ok() && (m.queue < 1 || m.queue > max_subscriber_queue)) r.fail("queue", "a number of events from 1 to 1024");
  if (r.ok() && !(m.max_rate >= 0 && m.max_rate <= 1e9)) r.fail("max_rate", "events per second, 0 (no limit) or more");
  if (!r.ok()) return r.err();
  return m;
}

result<subscription_report> parse_subscription_report(const value& v) {
  field_reader r(v, "subscription");
  subscription_report s;
  s.subscription = r.integer("subscription");
  s.service = r.text("service", false);
  s.topic = r.text("topic", false);
  s.type = r.text("type", false);
  s.queue = r.integer("queue", false);
  s.max_rate = r.number("max_rate", false);
  if (!r.ok()) return r.err();
  return s;
}

result<unsubscribe_message> parse_unsubscribe(const value& v) {
  field_reader r(v, "unsubscribe");
  unsubscribe_message m;
  m.subscription = r.integer("subscription");
  if (!r.ok()) return r.err();
  return m;
}

result<event_message> parse_event(value&& v) {
  field_reader r(v, "event");
  event_message m;
  m.subscription = r.integer("subscription");
  m.seq = r.integer("seq", false);
  m.dropped = r.integer("dropped", false);
  m.time = r.number("time", false);
  r.get("value");
  if (!r.ok()) return r.err();
  for (auto& [key, field] : v.as_map())
    if (key == "value") {
      m.data = std::move(field);
      break;
    }
  return m;
}

void write_event_envelope(const event_message& m, std::vector<std::uint8_t>& out) {
  using codec_detail::put_u32;
  using codec_detail::put_u64;
  auto key = [&](std::string_view k) {
    put_u32(out, static_cast<std::uint32_t>(k.size()));
    out.insert(out.end(), k.begin(), k.end());
  };
  auto int64 = [&](std::int64_t v) {
    out.push_back(static_cast<std::uint8_t>(value_kind::int64));
    put_u64(out, static_cast<std::uint64_t>(v));
  };
  out.push_back(static_cast<std::uint8_t>(value_kind::map));
  put_u32(out, 5);
  key("subscription");
  int64(m.subscription);
  key("seq");
  int64(m.seq);
  key("dropped");
  int64(m.dropped);
  key("time");
  out.push_back(static_cast<std::uint8_t>(value_kind::float64));
  put_u64(out, std::bit_cast<std::uint64_t>(m.time));
  key("value");
}

std::optional<event_message> read_event_envelope(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < event_envelope_size) return std::nullopt;
  // Compare with an envelope of the same numbers: same bytes means the same layout.
  auto number_at = [&](std::size_t at) {
    std::uint64_t v;
    std::memcpy(&v, bytes.data() + at, 8);
    return v;
  };
  constexpr std::size_t subscription_at = 5 + 4 + 12 + 1, seq_at = subscription_at + 8 + 4 + 3 + 1,
                        dropped_at = seq_at + 8 + 4 + 7 + 1, time_at = dropped_at + 8 + 4 + 4 + 1;
  event_message m;
  m.subscription = static_cast<std::int64_t>(number_at(subscription_at));
  m.seq = static_cast<std::int64_t>(number_at(seq_at));
  m.dropped = static_cast<std::int64_t>(number_at(dropped_at));
  m.time = std::bit_cast<double>(number_at(time_at));
  std::vector<std::uint8_t> expected;
  write_event_envelope(m, expected);
  if (!std::equal(expected.begin(), expected.end(), bytes.begin())) return std::nullopt;
  return m;
}

result<value> decode_payload(std::span<const std::uint8_t> payload, const decode_limits& limits) {
  auto decoded = decode(payload, limits);
  if (!decoded.ok()) return error{errc::bad_frame, "payload: " + decoded.message()};
  return std::move(decoded.decoded);
}

std::vector<std::uint8_t> encode_frame(message_type type, std::uint32_t request_id,
                                       const value& payload) {
  std::vector<std::uint8_t> frame(header_size);
  encode(payload, frame);
  frame_header h;
  h.type = type;
  h.request_id = request_id;
  h.payload_size = static_cast<std::uint32_t>(frame.size() - header_size);
  write_header(h, std::span<std::uint8_t, header_size>(frame.data(), header_size));
  return frame;
}

}  // namespace labhost::protocol
