// host_config.h: the model of host.json, and its validation (docs/host-json.md).
//
// Loading validates everything before anything starts: every error names its exact path
// ("daemons.main.services.laser.driver") and what was expected; unknown keys are errors.
// A loaded host_config is a plain value, safe to share read-only between threads.
#ifndef LABHOST_HOST_HOST_CONFIG_H
#define LABHOST_HOST_HOST_CONFIG_H

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../protocol/address.h"
#include "labhost/limits.h"
#include "labhost/value.h"

namespace labhost::host {

/// A listen or connect address: IPv4 "127.0.0.1:7701", IPv6 "[::1]:7701", or "localhost:7701",
/// parsed by protocol::parse_endpoint (port 0, "a free port", only where a server listens).
using endpoint_address = protocol::endpoint;

enum class server_type { threaded, multiplexed };
enum class instance_mode { single, session, percall };

std::string_view server_type_name(server_type type) noexcept;
std::string_view instance_mode_name(instance_mode mode) noexcept;

struct service_config {
  std::string name;
  std::string driver;  // plain plugin name, resolved in plugin_dir
  value params = map{};
  instance_mode mode = instance_mode::single;
  std::string description;
  value metadata = map{};
};

/// host.json "tls": every daemon and the nameserver of the host serve TLS only.
struct tls_config {
  std::filesystem::path cert_file;  // this host's certificate chain (PEM), shown to clients
  std::filesystem::path key_file;   // its private key (PEM), readable by its owner only
  std::filesystem::path ca_file;    // the lab CA: checks client certificates and other nameservers
  bool verify_clients = false;      // mutual TLS: a client must show a certificate the CA signed
  bool enabled() const noexcept { return !cert_file.empty(); }
};

struct daemon_config {
  std::string name;
  endpoint_address address;
  server_type type = server_type::threaded;
  unsigned pool_size = 4;            // threaded: worker threads; multiplexed: always 1
  std::chrono::microseconds busy_poll = limits::default_busy_poll;  // poll before sleeping (0: never)
  unsigned max_connections = 1024;
  bool lockable = false;
  std::chrono::milliseconds lease{10'000};
  std::uint32_t max_frame_bytes = limits::default_max_frame_bytes;
  std::filesystem::path admin_secret_file;  // empty: force unlock disabled
  std::filesystem::path auth_secret_file;   // host-wide auth.secret_file; empty: no secret
  bool insecure = false;                    // listening beyond loopback without a secret allowed
  tls_config tls;                           // host-wide "tls"; disabled: plain TCP
  std::chrono::milliseconds handshake_timeout{10'000};  // a connection silent this long is dropped
  unsigned max_requests_in_flight = 64;     // per session; beyond, requests get busy
  unsigned max_subscriptions = 64;          // per session; beyond, subscribe gets busy
  std::uint64_t subscriber_queue_bytes = 16u << 20;  // events one subscription keeps, at most
  unsigned max_value_depth = limits::default_max_value_depth;       // nesting of lists and maps in one value
  unsigned max_value_items = limits::default_max_value_items;    // list and map entries in one value
  std::filesystem::path journal_file;       // the audit journal (STATE_DIR/journal/NAME.jsonl); empty: none
  std::uint64_t journal_rotate_bytes = 10u << 20;
  unsigned journal_keep_files = 5;
  std::vector<endpoint_address> register_with;  // nameservers this daemon registers with
  // host.json lan_discovery.announce (true there by default): announce the daemon on the LAN
  // (DNS-SD). Off here, so daemons made in code (the nameserver, tests) stay off the LAN.
  bool lan_announce = false;
  std::vector<service_config> services;
};

struct nameserver_config {
  endpoint_address listen;
  std::chrono::milliseconds lease{10'000};
};

/// True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost.
bool is_loopback(const endpoint_address& address);

struct logging_config {
  std::string level = "info";           // debug, info, warning, error
  std::filesystem::path file;           // empty: stderr only (journald under systemd)
  std::uint64_t rotate_bytes = 10u << 20;
  unsigned keep_files = 5;
};

/// host.json "journal": each daemon's audit journal (who locked and called what).
struct journal_config {
  bool enabled = true;
  std::uint64_t rotate_bytes = 10u << 20;
  unsigned keep_files = 5;
};

/// host.json "lan_discovery": DNS-SD announcements of the daemons (core/naming/lan_announcer.h).
struct lan_discovery_config {
  bool announce = true;  // each daemon that listens beyond loopback announces itself through Avahi
};

/// host.json "http": the status page and /metrics of `labhost up`.
struct http_config {
  endpoint_address listen;  // loopback by default (127.0.0.1:7780)
  double refresh_s = 1.0;   // how often the supervisor asks every daemon for its figures
};

struct host_config {
  std::filesystem::path file;        // where it was read from
  std::filesystem::path plugin_dir;  // absolute
  std::filesystem::path state_dir;   // absolute: the supervisor's lock and control socket
  logging_config logging;
  std::optional<nameserver_config> nameserver;  // one to run on this host
  std::vector<endpoint_address> register_with;  // nameservers every daemon registers with
  std::filesystem::path auth_secret_file;        // auth.secret_file; empty: no authentication
  bool insecure = false;
  tls_config tls;
  journal_config journal;
  lan_discovery_config lan_discovery;
  std::optional<http_config> http;  // absent: no status page
  std::vector<daemon_config> daemons;

  const daemon_config* find_daemon(std::string_view name) const noexcept;
};

/// A host.json problem. what() is one line: "PATH: what was expected".
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A text that changes whenever anything that a daemon's process reads from host.json changes:
/// `labhost reload` restarts a daemon exactly when its fingerprint changed.
std::string fingerprint(const daemon_config& daemon, const host_config& host);

/// The admin secret in `file`: its first line, without surrounding white space. Throws
/// config_error when the file cannot be read, is empty, or others may read it.
std::string read_secret_file(const std::filesystem::path& file, const std::string& path_for_errors);

/// Checks that the files of a "tls" section can serve: each certificate and key parses, the
/// key belongs to the certificate and only its owner may read it. Throws config_error naming
/// `path_for_errors` ("tls.key_file") and OpenSSL's reason.
void check_tls_files(const tls_config& tls, const std::string& path_for_errors);

/// The state directory named by a host.json, read without validating the rest, so that
/// `labhost ps|down|reload` still reach the supervisor while host.json is being edited.
std::filesystem::path read_state_dir(const std::filesystem::path& file);

/// Reads and validates a host.json file. Throws config_error.
host_config load_host_config(const std::filesystem::path& file);
/// Validates host.json text; `file` is used for messages and relative paths. Throws config_error.
host_config parse_host_config(std::string_view text, const std::filesystem::path& file);

/// Path of the plugin file for a driver name in a plugin folder ("sim_laser" ->
/// DIR/sim_laser.so).
std::filesystem::path plugin_file(const std::filesystem::path& plugin_dir, std::string_view driver);

}  // namespace labhost::host

#endif  // LABHOST_HOST_HOST_CONFIG_H
