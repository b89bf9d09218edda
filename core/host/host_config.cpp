#include "host_config.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "../protocol/json_value.h"
#include "../protocol/secret_file.h"

namespace labhost::host {
namespace json = boost::json;

namespace {

/// The address at `path` of host.json; a config_error saying why it is not one.
endpoint_address endpoint_at(const std::string& path, std::string_view text, protocol::port_zero zero) {
  auto parsed = protocol::parse_endpoint(text, zero);
  if (!parsed) throw config_error(path + ": " + parsed.err().message);
  return std::move(*parsed);
}

/// Walks a JSON object, checking types and refusing keys it was not asked about.
class object_reader {
 public:
  object_reader(const json::value& v, std::string path) : path_(std::move(path)) {
    if (!v.is_object()) throw config_error(where() + "expected an object");
    object_ = &v.get_object();
  }

  const json::value* optional(std::string_view key) {
    seen_.insert(std::string(key));
    auto it = object_->find(key);
    return it == object_->end() ? nullptr : &it->value();
  }
  const json::value& required(std::string_view key, std::string_view expected) {
    const json::value* v = optional(key);
    if (v == nullptr) throw config_error(child(key) + ": missing (expected " + std::string(expected) + ")");
    return *v;
  }

  std::string text(std::string_view key, const std::string& fallback) {
    const json::value* v = optional(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) throw config_error(child(key) + ": expected a string");
    return std::string(v->get_string());
  }
  bool boolean(std::string_view key, bool fallback) {
    const json::value* v = optional(key);
    if (v == nullptr) return fallback;
    if (!v->is_bool()) throw config_error(child(key) + ": expected true or false");
    return v->get_bool();
  }
  std::int64_t integer(std::string_view key, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) {
    const json::value* v = optional(key);
    if (v == nullptr) return fallback;
    std::int64_t i;
    if (v->is_int64()) i = v->get_int64();
    else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(max)) i = static_cast<std::int64_t>(v->get_uint64());
    else if (v->is_uint64()) i = max + 1;
    else throw config_error(child(key) + ": expected an integer");
    if (i < min || i > max)
      throw config_error(child(key) + ": " + std::to_string(i) + " is out of range (expected " +
                         std::to_string(min) + " to " + std::to_string(max) + ")");
    return i;
  }
  double number(std::string_view key, double fallback, double min, double max) {
    const json::value* v = optional(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) throw config_error(child(key) + ": expected a number");
    double d = v->to_number<double>();
    if (d < min || d > max) {
      std::ostringstream os;
      os << child(key) << ": " << d << " is out of range (expected " << min << " to " << max << ")";
      throw config_error(os.str());
    }
    return d;
  }

  /// Call after reading every known key: anything left over is a typo or a stale key.
  void refuse_unknown_keys(std::initializer_list<std::string_view> known_for_message) {
    for (const auto& [key, unused] : *object_) {
      if (seen_.count(std::string(key))) continue;
      std::string list;
      for (auto k : known_for_message) list += (list.empty() ? "" : ", ") + std::string(k);
      throw config_error(child(key) + ": unknown key (expected one of: " + list + ")");
    }
  }

  const json::object& object() const { return *object_; }
  std::string child(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

 private:
  std::string where() const { return path_.empty() ? std::string("host.json: ") : path_ + ": "; }
  const json::object* object_;
  std::string path_;
  std::set<std::string> seen_;
};

bool is_plain_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// Driver names available in a plugin folder (file stems of *.so).
std::vector<std::string> available_plugins(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".so") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

void check_driver(const std::string& path, const std::string& driver,
                  const std::filesystem::path& plugin_dir) {
  if (!is_plain_name(driver))
    throw config_error(path + ": \"" + driver +
                       "\" is not a plain plugin name (letters, digits, _ and - only; no paths)");
  std::error_code ec;
  if (std::filesystem::exists(plugin_file(plugin_dir, driver), ec)) return;
  std::string message = path + ": no plugin \"" + driver + "\" in " + plugin_dir.string();
  std::string best;
  std::size_t best_distance = 3;  // suggest only close names
  for (const auto& candidate : available_plugins(plugin_dir)) {
    std::size_t d = edit_distance(driver, candidate);
    if (d < best_distance) best_distance = d, best = candidate;
  }
  if (!best.empty()) message += " (did you mean " + best + "?)";
  throw config_error(message);
}

service_config parse_service(const std::string& path, const std::string& name,
                             const json::value& v, const std::filesystem::path& plugin_dir) {
  if (!is_plain_name(name))
    throw config_error(path + ": service names use letters, digits, _ and - only");
  object_reader r(v, path);
  service_config s;
  s.name = name;
  const json::value& driver = r.required("driver", "a plugin name");
  if (!driver.is_string()) throw config_error(r.child("driver") + ": expected a string");
  s.driver = std::string(driver.get_string());
  check_driver(r.child("driver"), s.driver, plugin_dir);
  if (const json::value* params = r.optional("params")) {
    if (!params->is_object()) throw config_error(r.child("params") + ": expected an object");
    s.params = protocol::json_to_value(*params);
  }
  std::string mode = r.text("mode", "single");
  if (mode == "single") s.mode = instance_mode::single;
  else if (mode == "session") s.mode = instance_mode::session;
  else if (mode == "percall") s.mode = instance_mode::percall;
  else throw config_error(r.child("mode") + ": \"" + mode + "\" (expected single, session or percall)");
  s.description = r.text("description", "");
  if (const json::value* metadata = r.optional("metadata")) {
    if (!metadata->is_object()) throw config_error(r.child("metadata") + ": expected an object");
    s.metadata = protocol::json_to_value(*metadata);
  }
  r.refuse_unknown_keys({"driver", "params", "mode", "description", "metadata"});
  return s;
}

daemon_config parse_daemon(const std::string& path, const std::string& name, const json::value& v,
                           const std::filesystem::path& plugin_dir, const std::filesystem::path& base) {
  if (!is_plain_name(name))
    throw config_error(path + ": daemon names use letters, digits, _ and - only");
  if (name == "nameserver")
    throw config_error(path + ": \"nameserver\" names the host's nameserver; choose another daemon name");
  object_reader r(v, path);
  daemon_config d;
  d.name = name;
  const json::value& address = r.required("address", "\"HOST:PORT\"");
  if (!address.is_string()) throw config_error(r.child("address") + ": expected \"HOST:PORT\"");
  d.address = endpoint_at(r.child("address"), address.get_string(), protocol::port_zero::allowed);
  std::string type = r.text("server_type", "threaded");
  if (type == "threaded") d.type = server_type::threaded;
  else if (type == "multiplexed") d.type = server_type::multiplexed;
  else throw config_error(r.child("server_type") + ": \"" + type + "\" (expected threaded or multiplexed)");
  d.pool_size = static_cast<unsigned>(r.integer("pool_size", 4, 1, 256));
  if (d.type == server_type::multiplexed) d.pool_size = 1;
  d.busy_poll = std::chrono::microseconds(r.integer("busy_poll_us", limits::default_busy_poll.count(), 0, 1'000'000));
  d.max_connections = static_cast<unsigned>(r.integer("max_connections", 1024, 1, 100000));
  d.lockable = r.boolean("lockable", false);
  d.lease = std::chrono::milliseconds(
      static_cast<std::int64_t>(r.number("lease_s", 10.0, 0.1, 86400.0) * 1000.0));
  d.max_frame_bytes = static_cast<std::uint32_t>(
      r.integer("max_frame_bytes", limits::default_max_frame_bytes, 4096, std::int64_t{1} << 31));
  d.handshake_timeout = std::chrono::milliseconds(
      static_cast<std::int64_t>(r.number("handshake_timeout_s", 10.0, 0.1, 3600.0) * 1000.0));
  d.max_requests_in_flight = static_cast<unsigned>(r.integer("max_requests_in_flight", 64, 1, 100000));
  d.max_subscriptions = static_cast<unsigned>(r.integer("max_subscriptions", 64, 1, 100000));
  d.subscriber_queue_bytes = static_cast<std::uint64_t>(
      r.integer("subscriber_queue_bytes", std::int64_t{16} << 20, 4096, std::int64_t{1} << 40));
  d.max_value_depth = static_cast<unsigned>(r.integer("max_value_depth", limits::default_max_value_depth, 2, 10000));
  d.max_value_items = static_cast<unsigned>(r.integer("max_value_items", limits::default_max_value_items, 16, 1 << 30));
  if (const json::value* secret = r.optional("admin_secret_file")) {
    if (!secret->is_string()) throw config_error(r.child("admin_secret_file") + ": expected a file path");
    std::filesystem::path file = std::string(secret->get_string());
    d.admin_secret_file = (file.is_absolute() ? file : base / file).lexically_normal();
    read_secret_file(d.admin_secret_file, r.child("admin_secret_file"));  // checked now, read at start
  }
  const json::value& services = r.required("services", "an object of services");
  object_reader sr(services, r.child("services"));
  for (const auto& [service_name, service] : sr.object()) {
    sr.optional(service_name);
    d.services.push_back(parse_service(sr.child(service_name), std::string(service_name), service, plugin_dir));
  }
  r.refuse_unknown_keys({"address", "server_type", "pool_size", "busy_poll_us", "max_connections", "lockable",
                         "lease_s", "max_frame_bytes", "handshake_timeout_s", "max_requests_in_flight",
                         "max_subscriptions", "subscriber_queue_bytes", "max_value_depth", "max_value_items", "admin_secret_file", "services"});
  return d;
}

}  // namespace

bool is_loopback(const endpoint_address& address) {
  if (address.host == "localhost" || address.host == "::1") return true;
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(address.host, ec);
  return !ec && ip.is_loopback();
}

std::string_view server_type_name(server_type type) noexcept {
  return type == server_type::threaded ? "threaded" : "multiplexed";
}

std::string_view instance_mode_name(instance_mode mode) noexcept {
  switch (mode) {
    case instance_mode::single: return "single";
    case instance_mode::session: return "session";
    case instance_mode::percall: return "percall";
  }
  return "single";
}

const daemon_config* host_config::find_daemon(std::string_view name) const noexcept {
  for (const auto& d : daemons)
    if (d.name == name) return &d;
  return nullptr;
}

std::filesystem::path plugin_file(const std::filesystem::path& plugin_dir, std::string_view driver) {
  return plugin_dir / (std::string(driver) + ".so");
}

host_config parse_host_config(std::string_view text, const std::filesystem::path& file) {
  json::value root;
  {
    boost::system::error_code ec;
    json::parse_options options;
    options.allow_comments = true;  // labs annotate their instruments
    options.allow_trailing_commas = true;
    root = json::parse(text, ec, {}, options);
    if (ec) throw config_error(file.string() + ": not valid JSON: " + ec.message());
  }
  object_reader r(root, "");
  host_config config;
  config.file = file;
  std::filesystem::path base = file.has_parent_path() ? file.parent_path() : ".";
  std::filesystem::path plugin_dir = r.text("plugin_dir", "plugins");
  config.plugin_dir = std::filesystem::absolute(plugin_dir.is_absolute() ? plugin_dir : base / plugin_dir)
                          .lexically_normal();
  std::error_code ec;
  if (!std::filesystem::is_directory(config.plugin_dir, ec))
    throw config_error("plugin_dir: " + config.plugin_dir.string() + " is not a folder");

  std::filesystem::path state_dir = r.text("state_dir", "state");
  config.state_dir =
      std::filesystem::absolute(state_dir.is_absolute() ? state_dir : base / state_dir).lexically_normal();
  if (const json::value* log = r.optional("logging")) {
    object_reader lr(*log, "logging");
    config.logging.level = lr.text("level", "info");
    if (config.logging.level != "debug" && config.logging.level != "info" &&
        config.logging.level != "warning" && config.logging.level != "error")
      throw config_error("logging.level: \"" + config.logging.level +
                         "\" (expected debug, info, warning or error)");
    std::filesystem::path log_file = lr.text("file", "");
    if (!log_file.empty())
      config.logging.file = (log_file.is_absolute() ? log_file : base / log_file).lexically_normal();
    config.logging.rotate_bytes =
        static_cast<std::uint64_t>(lr.number("rotate_mib", 10.0, 0.01, 1e6) * 1024 * 1024);
    config.logging.keep_files = static_cast<unsigned>(lr.integer("keep", 5, 1, 1000));
    lr.refuse_unknown_keys({"level", "file", "rotate_mib", "keep"});
  }
  if (const json::value* ns = r.optional("nameserver")) {
    object_reader nr(*ns, "nameserver");
    nameserver_config n;
    const json::value& listen = nr.required("listen", "\"HOST:PORT\"");
    if (!listen.is_string()) throw config_error(nr.child("listen") + ": expected \"HOST:PORT\"");
    n.listen = endpoint_at(nr.child("listen"), listen.get_string(), protocol::port_zero::allowed);
    n.lease = std::chrono::milliseconds(
        static_cast<std::int64_t>(nr.number("lease_s", 10.0, 0.1, 86400.0) * 1000.0));
    nr.refuse_unknown_keys({"listen", "lease_s"});
    config.nameserver = n;
  }
  if (const json::value* list = r.optional("register_with")) {
    if (!list->is_array()) throw config_error("register_with: expected a list of \"HOST:PORT\"");
    for (std::size_t i = 0; i < list->get_array().size(); ++i) {
      const auto& entry = list->get_array()[i];
      std::string path = "register_with[" + std::to_string(i) + "]";
      if (!entry.is_string()) throw config_error(path + ": expected \"HOST:PORT\"");
      // A nameserver to register with has a port of its own: 0 names no server.
      config.register_with.push_back(endpoint_at(path, entry.get_string(), protocol::port_zero::refused));
    }
  } else if (config.nameserver) {
    // By default the daemons register with the nameserver of their own host.
    auto local = config.nameserver->listen;
    if (local.host == "0.0.0.0") local.host = "127.0.0.1";
    if (local.host == "::") local.host = "::1";
    config.register_with.push_back(local);
  }

  if (const json::value* auth = r.optional("auth")) {
    object_reader ar(*auth, "auth");
    const json::value& secret_value = ar.required("secret_file", "a file path");
    if (!secret_value.is_string()) throw config_error(ar.child("secret_file") + ": expected a file path");
    std::filesystem::path secret = std::string(secret_value.get_string());
    config.auth_secret_file = (secret.is_absolute() ? secret : base / secret).lexically_normal();
    read_secret_file(config.auth_secret_file, ar.child("secret_file"));  // checked now, read at start
    ar.refuse_unknown_keys({"secret_file"});
  }
  if (const json::value* tls = r.optional("tls")) {
    object_reader tr(*tls, "tls");
    auto tls_file = [&](std::string_view key) {
      const json::value& v = tr.required(key, "a file path");
      if (!v.is_string() || v.get_string().empty()) throw config_error(tr.child(key) + ": expected a file path");
      std::filesystem::path p = std::string(v.get_string());
      return (p.is_absolute() ? p : base / p).lexically_normal();
    };
    config.tls.cert_file = tls_file("cert_file");
    config.tls.key_file = tls_file("key_file");
    config.tls.ca_file = tls_file("ca_file");
    config.tls.verify_clients = tr.boolean("verify_clients", false);
    tr.refuse_unknown_keys({"cert_file", "key_file", "ca_file", "verify_clients"});
    check_tls_files(config.tls, "tls");
  }
  config.insecure = r.boolean("insecure", false);
  // Safe by default: beyond loopback, only when clients must prove who they are (a secret,
  // or a client certificate), or when the owner said so.
  auto check_exposure = [&](const endpoint_address& a, const std::string& path) {
    if (is_loopback(a) || !config.auth_secret_file.empty() || config.tls.verify_clients || config.insecure) return;
    throw config_error(path + ": " + a.to_string() +
                       " is reachable from the network, and host.json sets neither auth.secret_file nor "
                       "tls.verify_clients: set one, or \"insecure\": true to let anyone on the network in");
  };
  if (config.nameserver) check_exposure(config.nameserver->listen, "nameserver.listen");
  if (const json::value* journal = r.optional("journal")) {
    object_reader jr(*journal, "journal");
    config.journal.enabled = jr.boolean("enabled", true);
    config.journal.rotate_bytes =
        static_cast<std::uint64_t>(jr.integer("rotate_bytes", 10 << 20, 4096, std::int64_t{1} << 40));
    config.journal.keep_files = static_cast<unsigned>(jr.integer("keep_files", 5, 1, 1000));
    jr.refuse_unknown_keys({"enabled", "rotate_bytes", "keep_files"});
  }
  if (const json::value* lan = r.optional("lan_discovery")) {
    object_reader lr(*lan, "lan_discovery");
    config.lan_discovery.announce = lr.boolean("announce", true);
    lr.refuse_unknown_keys({"announce"});
  }
  if (const json::value* http = r.optional("http")) {
    object_reader hr(*http, "http");
    http_config h;
    std::string listen = hr.text("listen", "127.0.0.1:7780");
    h.listen = endpoint_at(hr.child("listen"), listen, protocol::port_zero::allowed);
    h.refresh_s = hr.number("refresh_s", 1.0, 0.1, 60.0);
    hr.refuse_unknown_keys({"listen", "refresh_s"});
    // The page shows who holds which instrument. Off loopback: the daemons' rule (a secret, or
    // client certificates, or insecure), and TLS when it asks for the secret, which would
    // otherwise cross the network in clear (HTTP Basic, unlike the daemons' handshake).
    if (!is_loopback(h.listen)) {
      if (!config.auth_secret_file.empty() && !config.tls.enabled())
        throw config_error(hr.child("listen") + ": " + h.listen.to_string() +
                           " is reachable from the network, and the page would ask for the secret without TLS: "
                           "add \"tls\" to host.json, or listen on loopback");
      if (config.auth_secret_file.empty() && !config.tls.verify_clients && !config.insecure)
        throw config_error(hr.child("listen") + ": " + h.listen.to_string() +
                           " is reachable from the network, and host.json sets neither auth.secret_file nor "
                           "tls.verify_clients: set one, or \"insecure\": true to let anyone on the network see it");
    }
    config.http = std::move(h);
  }

  const json::value& daemons = r.required("daemons", "an object of daemons");
  object_reader dr(daemons, "daemons");
  std::map<std::uint16_t, std::string> ports;
  for (const auto& [name, daemon] : dr.object()) {
    dr.optional(name);
    auto d = parse_daemon(dr.child(name), std::string(name), daemon, config.plugin_dir, base);
    d.register_with = config.register_with;
    d.auth_secret_file = config.auth_secret_file;
    d.insecure = config.insecure;
    d.tls = config.tls;
    if (config.journal.enabled) d.journal_file = config.state_dir / "journal" / (d.name + ".jsonl");
    d.journal_rotate_bytes = config.journal.rotate_bytes;
    d.journal_keep_files = config.journal.keep_files;
    d.lan_announce = config.lan_discovery.announce;
    check_exposure(d.address, dr.child(name) + ".address");
    // Port 0 (pick a free port) may repeat: tests use it for every daemon.
    if (d.address.port != 0) {
      auto [it, fresh] = ports.emplace(d.address.port, d.name);
      if (!fresh)
        throw config_error(dr.child(name) + ".address: port " + std::to_string(d.address.port) +
                           " is already used by daemon " + it->second);
    }
    config.daemons.push_back(std::move(d));
  }
  if (config.nameserver && config.nameserver->listen.port != 0) {
    for (const auto& d : config.daemons)
      if (d.address.port == config.nameserver->listen.port)
        throw config_error("nameserver.listen: port " + std::to_string(d.address.port) +
                           " is already used by daemon " + d.name);
  }
  if (config.http && config.http->listen.port != 0) {
    for (const auto& d : config.daemons)
      if (d.address.port == config.http->listen.port)
        throw config_error("http.listen: port " + std::to_string(d.address.port) + " is already used by daemon " +
                           d.name);
  }
  r.refuse_unknown_keys({"plugin_dir", "state_dir", "logging", "auth", "tls", "insecure", "nameserver",
                         "register_with", "journal", "lan_discovery", "http", "daemons"});
  return config;
}

std::string fingerprint(const daemon_config& d, const host_config& host) {
  std::ostringstream f;
  f << host.plugin_dir.string() << '|' << host.logging.level << '|' << d.address.to_string() << '|'
    << server_type_name(d.type) << '|' << d.pool_size << '|' << d.busy_poll.count() << '|' << d.max_connections << '|'
    << d.lockable << '|' << d.lease.count() << '|' << d.max_frame_bytes << '|' << d.admin_secret_file.string() << '|'
    << d.auth_secret_file.string() << '|' << d.insecure << '|' << d.handshake_timeout.count() << '|'
    << d.max_requests_in_flight << '|' << d.max_subscriptions << '|' << d.subscriber_queue_bytes << '|'
    << d.max_value_depth << '|' << d.journal_file.string() << '|' << d.journal_rotate_bytes << '|'
    << d.journal_keep_files << '|' << d.max_value_items
    << "|tls=" << d.tls.cert_file.string() << ',' << d.tls.key_file.string() << ',' << d.tls.ca_file.string() << ','
    << d.tls.verify_clients << "|lan_announce=" << d.lan_announce;
  for (const auto& ns : d.register_with) f << "|ns=" << ns.to_string();
  for (const auto& s : d.services)
    f << "|service=" << s.name << ',' << s.driver << ',' << instance_mode_name(s.mode) << ','
      << protocol::to_json_text(s.params) << ',' << s.description << ',' << protocol::to_json_text(s.metadata);
  return f.str();
}

std::string read_secret_file(const std::filesystem::path& file, const std::string& path_for_errors) {
  std::error_code ec;
  auto status = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::is_regular_file(status))
    throw config_error(path_for_errors + ": " + file.string() + " is not a readable file");
  using perms = std::filesystem::perms;
  if ((status.permissions() & (perms::group_all | perms::others_all)) != perms::none)
    throw config_error(path_for_errors + ": " + file.string() +
                       " may be read by others; restrict it to its owner (chmod 600)");
  auto secret = protocol::read_secret_file(file);
  if (!secret) throw config_error(path_for_errors + ": " + secret.err().message);
  return std::move(*secret);
}

namespace {

/// OpenSSL's reason for the last failure, one line.
std::string openssl_reason() {
  std::string reason;
  while (unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    reason = text;  // the last one is the most specific
  }
  return reason.empty() ? "unknown OpenSSL error" : reason;
}

}  // namespace

void check_tls_files(const tls_config& tls, const std::string& path) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!context) throw config_error(path + ": cannot set up TLS: " + openssl_reason());
  auto readable = [&](const std::filesystem::path& file, const std::string& key) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec) || !std::ifstream(file))
      throw config_error(path + "." + key + ": " + file.string() + " is not a readable file");
  };
  readable(tls.cert_file, "cert_file");
  if (SSL_CTX_use_certificate_chain_file(context.get(), tls.cert_file.c_str()) != 1)
    throw config_error(path + ".cert_file: " + tls.cert_file.string() +
                       " is not a PEM certificate: " + openssl_reason());
  readable(tls.key_file, "key_file");
  using perms = std::filesystem::perms;
  if ((std::filesystem::status(tls.key_file).permissions() & (perms::group_all | perms::others_all)) != perms::none)
    throw config_error(path + ".key_file: " + tls.key_file.string() +
                       " may be read by others; restrict it to its owner (chmod 600)");
  bool key_loaded = SSL_CTX_use_PrivateKey_file(context.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
  if (!key_loaded && ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
    throw config_error(path + ".key_file: " + tls.key_file.string() + " is not a PEM private key: " + openssl_reason());
  if (!key_loaded || SSL_CTX_check_private_key(context.get()) != 1) {
    ERR_clear_error();
    throw config_error(path + ".key_file: " + tls.key_file.string() + " is not the key of " + tls.cert_file.string());
  }
  readable(tls.ca_file, "ca_file");
  if (SSL_CTX_load_verify_locations(context.get(), tls.ca_file.c_str(), nullptr) != 1)
    throw config_error(path + ".ca_file: " + tls.ca_file.string() + " holds no PEM certificate: " + openssl_reason());
}

std::filesystem::path read_state_dir(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  json::parse_options options;
  options.allow_comments = true;
  options.allow_trailing_commas = true;
  boost::system::error_code ec;
  auto root = json::parse(text.str(), ec, {}, options);
  std::filesystem::path state_dir = "state";
  if (!ec && root.is_object())
    if (auto* given = root.as_object().if_contains("state_dir"); given && given->is_string())
      state_dir = std::string(given->as_string());
  std::filesystem::path base = file.has_parent_path() ? file.parent_path() : ".";
  return std::filesystem::absolute(state_dir.is_absolute() ? state_dir : base / state_dir).lexically_normal();
}

host_config load_host_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw config_error(file.string() + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return parse_host_config(text.str(), file);
}

}  // namespace labhost::host
