// test_daemon.h: a real `labhost daemon` process for a test, on an ephemeral loopback port.
//
// Writes a host.json with one daemon "test" (address 127.0.0.1:0) and the given services in
// a fresh temporary folder, whose plugins/ links every built plugin (simulated and test
// drivers), starts build/bin/labhost daemon on it, and reads the "listening on" line to learn
// the port. The daemon's log is kept in the folder and printed when a test fails to start it.
#ifndef LABHOST_TESTS_TEST_DAEMON_H
#define LABHOST_TESTS_TEST_DAEMON_H

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "labhost/client.h"
#include "test_process.h"

namespace labhost::testing {

/// Paths of the build, set by tests/CMakeLists.txt.
std::filesystem::path bin_dir();
std::filesystem::path plugin_dir();       // the simulated drivers
std::filesystem::path test_plugin_dir();  // the test drivers

/// A fresh temporary folder, removed with the object.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A plugins/ folder in `dir` holding symlinks to every built plugin.
std::filesystem::path make_plugin_folder(const std::filesystem::path& dir);

class test_daemon {
 public:
  /// `services`: the JSON object of services; `daemon_keys`: extra keys of the daemon entry
  /// (e.g. "\"server_type\": \"multiplexed\""; an "address" there replaces 127.0.0.1:0);
  /// `host_keys`: extra top-level keys of host.json (e.g. "\"register_with\": [...]").
  explicit test_daemon(const std::string& services, const std::string& daemon_keys = "",
                       const std::string& host_keys = "");
  ~test_daemon();

  std::uint16_t port() const { return port_; }
  std::string address(const std::string& service = "") const;
  std::shared_ptr<client> connect(client_options options = {}) const;
  test_process& process() { return *process_; }
  const std::filesystem::path& folder() const { return dir_.path(); }
  std::string log() const;
  /// SIGTERM, then wait for exit; the exit status.
  int stop();

 private:
  temp_dir dir_;
  std::unique_ptr<test_process> process_;
  std::uint16_t port_ = 0;
};

/// Runs `body` and returns the typed error it throws; throws when it throws none.
template <typename Body>
error error_of(Body&& body) {
  try {
    body();
  } catch (const remote_error& e) {
    return e.get();
  }
  throw std::runtime_error("expected a remote_error, but the request succeeded");
}

/// A `labhost ns` process on loopback (port 0: a free one).
class test_nameserver {
 public:
  explicit test_nameserver(std::uint16_t port = 0, double lease_s = 10.0);
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  test_process& process() { return *process_; }
  std::string log() const;

 private:
  temp_dir dir_;
  std::unique_ptr<test_process> process_;
  std::uint16_t port_ = 0;
};

/// A loopback port that was free a moment ago (bound to port 0, read back, released), for
/// tests that must start a server on an address known in advance.
std::uint16_t free_port();

/// Waits for a condition that other processes bring about (a registration, a restart):
/// checked every 20 ms, an exception counting as "not yet"; false after `limit`, a safety net.
bool eventually(const std::function<bool()>& condition, std::chrono::seconds limit = std::chrono::seconds(30));

}  // namespace labhost::testing

#endif  // LABHOST_TESTS_TEST_DAEMON_H
