// bench_daemon.h: what the benchmark measures: a real `labhost daemon` process serving the
// simulated laser and camera on an ephemeral loopback port, from a host.json written into a
// temporary folder. Also the floor server process, and /proc readings of a process.
//
// Not thread-safe: one owner. Both processes are stopped by their destructors.
#ifndef LABHOST_BENCH_BENCH_DAEMON_H
#define LABHOST_BENCH_BENCH_DAEMON_H

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "child_process.h"

namespace labhost::bench {

/// A fresh temporary folder, removed with the object.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

struct daemon_settings {
  std::filesystem::path labhost;  // the labhost program
  std::filesystem::path plugins;  // folder of sim_laser.so and sim_camera.so
  unsigned pool_size = 4;
  unsigned busy_poll_us = 50;  // host.json busy_poll_us
  unsigned max_connections = 4096;
  double lease_s = 10;
};

/// `labhost daemon --name bench`: services "laser" (sim_laser), "camera" (sim_camera,
/// 2048 x 2048) and "streaming_camera" (the same, publishing frames as fast as they are
/// taken), threaded. Throws std::runtime_error with the daemon's log when it does not
/// start.
class bench_daemon {
 public:
  bench_daemon(const daemon_settings& settings, const std::filesystem::path& folder);
  ~bench_daemon();
  std::uint16_t port() const noexcept { return port_; }
  pid_t pid() const noexcept { return process_->pid(); }
  std::string log() const;

 private:
  std::filesystem::path log_file_;
  std::unique_ptr<child_process> process_;
  std::uint16_t port_ = 0;
};

/// `labhost-bench floor-server`, a separate process like the daemon; kept on one CPU when
/// `cpu` is set.
class floor_process {
 public:
  floor_process(const std::filesystem::path& bench_program, bool threaded, const std::filesystem::path& folder,
                std::optional<int> cpu = std::nullopt);
  std::uint16_t port() const noexcept { return port_; }

 private:
  std::unique_ptr<child_process> process_;
  std::uint16_t port_ = 0;
};

/// Starts a program whose first stdout line ends in "listening on 127.0.0.1:PORT"; the port.
std::uint16_t read_listening_port(child_process& process, const std::string& what,
                                  const std::filesystem::path& log_file);

struct process_status {
  int threads = 0;
  double rss_mib = 0;  // VmRSS
};
/// Threads and VmRSS from /proc/PID/status. Throws when the process is gone.
process_status read_process_status(pid_t pid);

}  // namespace labhost::bench

#endif  // LABHOST_BENCH_BENCH_DAEMON_H
