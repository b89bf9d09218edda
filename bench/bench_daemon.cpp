#include "bench_daemon.h"

#include <signal.h>
#include <stdlib.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace labhost::bench {

namespace json = boost::json;

temp_dir::temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "labhost-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::uint16_t read_listening_port(child_process& process, const std::string& what,
                                  const std::filesystem::path& log_file) {
  // Starting takes milliseconds; the timeout only bounds a broken start.
  auto line = process.read_line(std::chrono::seconds(30));
  const std::string marker = " listening on 127.0.0.1:";
  auto at = line ? line->find(marker) : std::string::npos;
  if (at == std::string::npos)
    throw std::runtime_error(what + " did not start" + (line ? " (it printed \"" + *line + "\")" : "") +
                             "; its log:\n" + read_text_file(log_file.string()));
  return static_cast<std::uint16_t>(std::stoi(line->substr(at + marker.size())));
}

bench_daemon::bench_daemon(const daemon_settings& settings, const std::filesystem::path& folder)
    : log_file_(folder / "daemon.log") {
  json::object camera_params{{"width", 2048}, {"height", 2048}};
  // The streaming camera publishes frames as fast as its subscribers take them.
  json::object streaming_params{{"width", 2048}, {"height", 2048}, {"frame_rate_hz", 0}};
  json::object services{{"laser", json::object{{"driver", "sim_laser"}, {"description", "Tunable laser"}}},
                        {"camera", json::object{{"driver", "sim_camera"}, {"params", camera_params}}},
                        {"streaming_camera", json::object{{"driver", "sim_camera"}, {"params", streaming_params}}}};
  json::object daemon{{"address", "127.0.0.1:0"},
                      {"server_type", "threaded"},
                      {"pool_size", settings.pool_size},
                      {"busy_poll_us", settings.busy_poll_us},
                      {"max_connections", settings.max_connections},
                      {"lease_s", settings.lease_s},
                      {"services", services}};
  json::object config{{"plugin_dir", std::filesystem::absolute(settings.plugins).string()},
                      {"daemons", json::object{{"bench", daemon}}}};
  auto config_file = folder / "host.json";
  {
    std::ofstream out(config_file);
    out << json::serialize(config) << "\n";
    if (!out) throw std::runtime_error("cannot write " + config_file.string());
  }
  process_ = std::make_unique<child_process>(
      std::vector<std::string>{settings.labhost.string(), "daemon", "--config", config_file.string(),
                               "--name", "bench"},
      log_file_.string());
  port_ = read_listening_port(*process_, "labhost daemon", log_file_);
}

bench_daemon::~bench_daemon() {
  // The daemon stops gracefully on SIGTERM; a daemon that hangs is killed after the bound.
  process_->stop(SIGTERM, std::chrono::seconds(20));
}

std::string bench_daemon::log() const { return read_text_file(log_file_.string()); }

floor_process::floor_process(const std::filesystem::path& bench_program, bool threaded,
                             const std::filesystem::path& folder, std::optional<int> cpu) {
  std::string name = threaded ? "floor-threaded" : "floor-iterative";
  std::vector<std::string> argv{bench_program.string(), "floor-server", "--mode", threaded ? "threaded" : "iterative"};
  if (cpu) {
    name += "-cpu" + std::to_string(*cpu);
    argv.insert(argv.end(), {"--cpu", std::to_string(*cpu)});
  }
  auto log_file = folder / (name + ".log");
  process_ = std::make_unique<child_process>(argv, log_file.string());
  port_ = read_listening_port(*process_, "the floor server", log_file);
}

process_status read_process_status(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) throw std::runtime_error("process " + std::to_string(pid) + " is gone");
  process_status s;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "Threads:") {
      fields >> s.threads;
    } else if (key == "VmRSS:") {
      double kib = 0;
      fields >> kib;
      s.rss_mib = kib / 1024.0;
    }
  }
  return s;
}

}  // namespace labhost::bench
