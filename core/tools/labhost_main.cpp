// labhost: the host-side program. `labhost daemon` serves one daemon of host.json,
// `labhost up` starts and watches every daemon of host.json, `labhost check` validates
// host.json, `labhost plugins` inspects a plugin folder.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "command_line.h"
#include "host/host_config.h"
#include "logging/log.h"
#include "plugins_command.h"
#include "server/daemon.h"

namespace {

using namespace labhost;
using tools::command_line;
using tools::usage_error;

constexpr const char* usage_text =
    "usage: labhost COMMAND [OPTIONS]\n"
    "  up      [--config FILE] [--log-level L]   start every daemon of host.json and watch them\n"
    "  daemon  --name NAME [--config FILE] [--log-level L]\n"
    "                                            serve one daemon of host.json (foreground)\n"
    "  ns      --listen HOST:PORT [--lease S] [--log-level L]\n"
    "                                            run a nameserver (foreground)\n"
    "  check   [--config FILE]                   validate host.json and exit\n"
    "  plugins [--dir DIR] [--json]              describe every plugin file in a folder\n"
    "  version                                   print the version\n"
    "FILE defaults to ./host.json; DIR to the plugin_dir of ./host.json, else ./plugins.\n";

logging::severity log_level(const command_line& cl) {
  return logging::parse_severity(cl.get("log-level", "info"));
}

int run_daemon(const command_line& cl) {
  auto name = cl.get("name");
  if (!name) throw usage_error("labhost daemon needs --name NAME");
  logging::init("daemon " + *name, log_level(cl));
  auto config = host::load_host_config(cl.get("config", "host.json"));
  const host::daemon_config* d = config.find_daemon(*name);
  if (d == nullptr) {
    std::string known;
    for (const auto& each : config.daemons) known += (known.empty() ? "" : ", ") + each.name;
    throw host::config_error("daemons: no daemon named \"" + *name + "\" (host.json has: " + known + ")");
  }
  server::daemon daemon(*d, config.plugin_dir);
  // One line on stdout when serving: tests and scripts wait for it instead of sleeping.
  std::cout << "labhost daemon " << d->name << " listening on " << daemon.local_address()
            << std::endl;
  daemon.run();
  return 0;
}

/// Starts one `labhost daemon` per daemon of host.json, restarts those that exit (with a
/// growing delay), and stops them all on SIGINT/SIGTERM. Children get SIGTERM if this
/// process dies, so none is left holding an instrument.
int run_up(const command_line& cl) {
  logging::init("supervisor", log_level(cl));
  std::string config_file = cl.get("config", "host.json");
  auto config = host::load_host_config(config_file);

  sigset_t watched;
  sigemptyset(&watched);
  sigaddset(&watched, SIGINT);
  sigaddset(&watched, SIGTERM);
  sigaddset(&watched, SIGCHLD);
  sigprocmask(SIG_BLOCK, &watched, nullptr);

  struct child {
    pid_t pid = 0;
    std::chrono::milliseconds backoff{250};
    std::chrono::steady_clock::time_point restart_at{};
    std::chrono::steady_clock::time_point started{};
  };
  std::map<std::string, child> children;
  const pid_t supervisor = ::getpid();
  auto spawn = [&](const std::string& name) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != supervisor) ::_exit(1);  // the supervisor died before prctl
      sigprocmask(SIG_UNBLOCK, &watched, nullptr);
      std::string level = cl.get("log-level", "info");
      ::execl("/proc/self/exe", "labhost", "daemon", "--config", config_file.c_str(), "--name",
              name.c_str(), "--log-level", level.c_str(), static_cast<char*>(nullptr));
      std::cerr << "labhost up: cannot start daemon " << name << ": " << std::strerror(errno) << "\n";
      ::_exit(127);
    }
    children[name].pid = pid;
    children[name].started = std::chrono::steady_clock::now();
    LABHOST_LOG(info) << "daemon " << name << " started (pid " << pid << ")";
  };
  for (const auto& d : config.daemons) spawn(d.name);

  bool stopping = false;
  while (true) {
    // Wake for a signal, or in time for the next pending restart.
    auto now = std::chrono::steady_clock::now();
    auto wait = std::chrono::milliseconds(60'000);
    for (auto& [name, c] : children)
      if (c.pid == 0 && !stopping)
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::max(c.restart_at - now, std::chrono::steady_clock::duration{})));
    timespec timeout{static_cast<time_t>(wait.count() / 1000), static_cast<long>(wait.count() % 1000) * 1'000'000};
    int sig = sigtimedwait(&watched, nullptr, &timeout);
    if ((sig == SIGINT || sig == SIGTERM) && !stopping) {
      stopping = true;
      LABHOST_LOG(info) << "stopping every daemon";
      for (auto& [name, c] : children)
        if (c.pid > 0) ::kill(c.pid, SIGTERM);
    }
    int status;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      for (auto& [name, c] : children) {
        if (c.pid != pid) continue;
        c.pid = 0;
        if (stopping) break;
        // A daemon that ran a while gets a quick restart; one that keeps dying waits longer.
        if (std::chrono::steady_clock::now() - c.started > std::chrono::seconds(30))
          c.backoff = std::chrono::milliseconds(250);
        c.restart_at = std::chrono::steady_clock::now() + c.backoff;
        LABHOST_LOG(warning) << "daemon " << name << " exited ("
                             << (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                     : "status " + std::to_string(WEXITSTATUS(status)))
                             << "); restart in " << c.backoff.count() << " ms";
        c.backoff = std::min(c.backoff * 2, std::chrono::milliseconds(30'000));
      }
    }
    if (stopping) {
      bool any = false;
      for (auto& [name, c] : children) any = any || c.pid > 0;
      if (!any) break;
      continue;
    }
    now = std::chrono::steady_clock::now();
    for (auto& [name, c] : children)
      if (c.pid == 0 && now >= c.restart_at) spawn(name);
  }
  LABHOST_LOG(info) << "all daemons stopped";
  return 0;
}

int run_nameserver(const command_line& cl) {
  logging::init("nameserver", log_level(cl));
  auto listen = cl.get("listen");
  if (!listen) throw usage_error("labhost ns needs --listen HOST:PORT");
  host::daemon_config config;
  config.name = "nameserver";
  try {
    config.address = host::parse_endpoint(*listen);
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string("--listen: ") + e.what());
  }
  config.pool_size = 2;
  config.lease = std::chrono::milliseconds(static_cast<long long>(std::stod(cl.get("lease", "10")) * 1000));
  server::daemon nameserver(config, {});
  nameserver.serve_names();
  std::cout << "labhost nameserver listening on " << nameserver.local_address() << std::endl;
  nameserver.run();
  return 0;
}

int run_check(const command_line& cl) {
  std::string file = cl.get("config", "host.json");
  auto config = host::load_host_config(file);
  std::size_t services = 0;
  for (const auto& d : config.daemons) services += d.services.size();
  std::cout << file << ": ok (" << config.daemons.size() << " daemon(s), " << services
            << " service(s))\n";
  return 0;
}

int run_plugins(const command_line& cl) {
  std::filesystem::path dir;
  if (auto given = cl.get("dir")) {
    dir = *given;
  } else {
    std::error_code ec;
    dir = "plugins";
    if (std::filesystem::exists("host.json", ec)) {
      try {
        dir = host::load_host_config("host.json").plugin_dir;
      } catch (const host::config_error&) {
        // fall back to ./plugins: listing plugins must work while host.json is broken
      }
    }
  }
  return tools::list_plugins(dir, cl.flag("json"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << usage_text;
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1];
  try {
    if (command == "daemon")
      return run_daemon(command_line(argc, argv, 2, {"config", "name", "log-level"}, {}));
    if (command == "up") return run_up(command_line(argc, argv, 2, {"config", "log-level"}, {}));
    if (command == "check") return run_check(command_line(argc, argv, 2, {"config"}, {}));
    if (command == "ns")
      return run_nameserver(command_line(argc, argv, 2, {"listen", "lease", "log-level"}, {}));
    if (command == "plugins") return run_plugins(command_line(argc, argv, 2, {"dir"}, {"json"}));
    if (command == "version") {
      std::cout << "labhost " << LABHOST_VERSION << "\n";
      return 0;
    }
    std::cerr << "labhost: unknown command \"" << command << "\"\n" << usage_text;
    return 2;
  } catch (const usage_error& e) {
    std::cerr << "labhost " << command << ": " << e.what() << "\n" << usage_text;
    return 2;
  } catch (const host::config_error& e) {
    std::cerr << "labhost " << command << ": invalid host.json: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "labhost " << command << ": " << e.what() << "\n";
    return 1;
  }
}
