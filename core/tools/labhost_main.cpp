// labhost: the host-side program. `labhost daemon` serves one daemon of host.json,
// `labhost up` starts and watches every daemon of host.json, `labhost check` validates
// host.json, `labhost plugins` inspects a plugin folder.
#include <malloc.h>
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
#include <boost/json.hpp>

#include "host/host_config.h"
#include "host/supervisor.h"
#include "labhost/client.h"
#include "logging/log.h"
#include "naming/registrar.h"
#include "journal_command.h"
#include "logs_command.h"
#include "plugins_command.h"
#include "server/daemon.h"

namespace {

using namespace labhost;
using tools::command_line;
using tools::usage_error;

constexpr const char* usage_text =
    "usage: labhost COMMAND [OPTIONS]\n"
    "  up      [--config FILE] [--log-level L]   start the nameserver and every daemon of host.json,\n"
    "                                            restart those that exit (foreground)\n"
    "  ps      [--config FILE] [--json]          each daemon and service of the running host\n"
    "  down    [--config FILE]                   stop everything gracefully\n"
    "  reload  [--config FILE]                   start what host.json added, stop what it removed,\n"
    "                                            restart what changed, leave the rest alone\n"
    "  daemon  --name NAME [--config FILE] [--log-level L]\n"
    "                                            serve one daemon of host.json (foreground)\n"
    "  ns      --listen HOST:PORT [--lease S] [--secret-file F] [--insecure] [--log-level L]\n"
    "          [--tls-cert F --tls-key F --tls-ca F [--tls-verify-clients]]\n"
    "                                            run a nameserver (foreground)\n"
    "  check   [--config FILE]                   validate host.json and exit\n"
    "  plugins [--dir DIR] [--json]              describe every plugin file in a folder\n"
    "  logs    [NAME] [-f] [--lines N] [--config FILE]\n"
    "                                            what the nameserver and daemons said (the last N\n"
    "                                            lines, 50 by default; -f: then follow)\n"
    "  journal [--daemon D] [--service S] [--since T] [--json] [--config FILE]\n"
    "                                            who locked, unlocked and called what: T is a time\n"
    "                                            (2026-12-03T16:00) or an age (30m, 2h, 7d)\n"
    "  version                                   print the version\n"
    "FILE defaults to ./host.json, else the installed host.json; DIR to the plugin_dir of\n"
    "./host.json, else ./plugins.\n";

/// --config, else ./host.json, else the installed host.json (so that on a lab PC
/// `labhost ps` works from any folder).
std::string config_file(const command_line& cl) {
  if (auto given = cl.get("config")) return *given;
  std::error_code ec;
  if (std::filesystem::exists("host.json", ec)) return "host.json";
#ifdef LABHOST_DEFAULT_CONFIG
  if (std::filesystem::exists(LABHOST_DEFAULT_CONFIG, ec)) return LABHOST_DEFAULT_CONFIG;
#endif
  return "host.json";
}

logging::severity log_level(const command_line& cl) {
  return logging::parse_severity(cl.get("log-level", "info"));
}

int run_daemon(const command_line& cl) {
  auto name = cl.get("name");
  if (!name) throw usage_error("labhost daemon needs --name NAME");
  logging::init("daemon " + *name, log_level(cl));
  auto config = host::load_host_config(config_file(cl));
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

int run_up(const command_line& cl) {
  std::string level = cl.get("log-level", "");
  const std::string config = config_file(cl);
  if (level.empty()) level = host::load_host_config(config).logging.level;  // host.json's level
  logging::init("supervisor", logging::parse_severity(level));
  return host::run_supervisor(config, cl.get("log-level", ""));
}

/// `labhost ps`: the supervisor's view of each daemon, and each daemon's view of its services.
int run_ps(const command_line& cl) {
  const std::string config = config_file(cl);
  auto reply = boost::json::parse(host::control_request(config, "ps")).as_object();
  std::string host_secret;  // to ask daemons that require one about their services
  host::tls_config tls;     // and those that serve TLS
  try {
    auto parsed = host::load_host_config(config);
    tls = parsed.tls;
    if (!parsed.auth_secret_file.empty())
      host_secret = host::read_secret_file(parsed.auth_secret_file, "auth.secret_file");
  } catch (const host::config_error&) {
    // host.json is being edited: daemons that need the secret report it below
  }
  boost::json::array out;
  for (auto& entry : reply["daemons"].as_array()) {
    auto d = entry.as_object();
    boost::json::array services;
    if (d["role"] == "daemon" && d["state"] == "running") {
      try {
        auto address = service_address::parse(std::string(d["address"].as_string()));
        if (address.host == "0.0.0.0") address.host = "127.0.0.1";
        if (address.host == "::") address.host = "::1";
        auto options = naming::host_connection_options("labhost ps", host_secret, tls);
        options.heartbeats = false;
        options.timeout = std::chrono::seconds(2);
        options.connect_timeout = std::chrono::seconds(2);
        auto c = client::connect(address.host, address.port, options);
        auto locks = c->lock_status();
        for (const auto& s : c->describe().services) {
          boost::json::object service{{"name", s.name}, {"state", s.state}, {"reason", s.reason},
                                      {"driver", s.driver}, {"driver_version", s.driver_version}};
          for (const auto& l : locks)
            if (l.service == s.name && l.locked)
              service["lock_holder"] = l.holder_name + " (pid " + std::to_string(l.holder_pid) + ", " + l.holder_address + ")";
          services.push_back(service);
        }
      } catch (const remote_error& e) {
        d["services_error"] = std::string(e.name()) + ": " + e.message();
      }
    }
    d["services"] = services;
    out.push_back(d);
  }
  if (cl.flag("json")) {
    boost::json::object all{{"pid", reply["pid"]}, {"daemons", out}};
    if (auto* http = reply.if_contains("http")) all["http"] = *http;
    std::cout << boost::json::serialize(all) << "\n";
    return 0;
  }
  auto text = [](const boost::json::value& v) { return std::string(v.as_string()); };
  if (auto* http = reply.if_contains("http")) std::cout << "status page  " << text(*http) << "\n";
  for (auto& entry : out) {
    auto& d = entry.as_object();
    std::cout << text(d["name"]) << "  " << text(d["address"]) << "  " << text(d["state"]) << "  pid "
              << d["pid"] << "  restarts " << d["restarts"] << "  up "
              << static_cast<long long>(d["uptime_s"].to_number<double>()) << " s";
    if (!d["last_error"].as_string().empty()) std::cout << "  last error: " << text(d["last_error"]);
    std::cout << "\n";
    for (auto& s : d["services"].as_array()) {
      auto& service = s.as_object();
      std::cout << "    " << text(service["name"]) << "  " << text(service["state"]) << "  "
                << text(service["driver"]) << " " << text(service["driver_version"]);
      if (auto* holder = service.if_contains("lock_holder")) std::cout << "  locked by " << text(*holder);
      if (!service["reason"].as_string().empty()) std::cout << "  (" << text(service["reason"]) << ")";
      std::cout << "\n";
    }
    if (auto* e = d.if_contains("services_error")) std::cout << "    (" << text(*e) << ")\n";
  }
  return 0;
}

int run_control(const std::string& command, const command_line& cl) {
  std::string reply = host::control_request(config_file(cl), command);
  auto parsed = boost::json::parse(reply).as_object();
  if (!parsed["ok"].as_bool()) {
    std::cerr << "labhost " << command << ": " << std::string(parsed["error"].as_string()) << "\n";
    return 1;
  }
  if (cl.flag("json")) {
    std::cout << reply << "\n";
  } else if (command == "down") {
    std::cout << "stopped\n";
  } else {
    for (const char* key : {"started", "stopped", "restarted", "unchanged"}) {
      std::cout << key << ":";
      for (auto& name : parsed[key].as_array()) std::cout << " " << std::string(name.as_string());
      std::cout << "\n";
    }
  }
  return 0;
}

int run_nameserver(const command_line& cl) {
  logging::init("nameserver", log_level(cl));
  auto listen = cl.get("listen");
  if (!listen) throw usage_error("labhost ns needs --listen HOST:PORT");
  host::daemon_config config;
  config.name = "nameserver";
  auto address = protocol::parse_endpoint(*listen, protocol::port_zero::allowed);
  if (!address) throw usage_error("--listen: " + address.err().message);
  config.address = std::move(*address);
  config.pool_size = 2;
  config.lease = std::chrono::milliseconds(static_cast<long long>(cl.seconds("lease", 10) * 1000));
  if (config.lease.count() <= 0) throw usage_error("--lease: expected a number of seconds above 0");
  if (auto secret = cl.get("secret-file")) config.auth_secret_file = *secret;
  config.insecure = cl.flag("insecure");
  if (auto cert = cl.get("tls-cert")) {
    config.tls.cert_file = *cert;
    config.tls.key_file = cl.get("tls-key", "");
    config.tls.ca_file = cl.get("tls-ca", "");
    config.tls.verify_clients = cl.flag("tls-verify-clients");
    if (config.tls.key_file.empty() || config.tls.ca_file.empty())
      throw usage_error("--tls-cert needs --tls-key and --tls-ca");
    host::check_tls_files(config.tls, "--tls");
  }
  server::daemon nameserver(config, {});
  nameserver.serve_names();
  std::cout << "labhost nameserver listening on " << nameserver.local_address() << std::endl;
  nameserver.run();
  return 0;
}

int run_check(const command_line& cl) {
  std::string file = config_file(cl);
  auto config = host::load_host_config(file);
  std::size_t services = 0;
  for (const auto& d : config.daemons) services += d.services.size();
  std::cout << file << ": ok (" << config.daemons.size() << " daemon(s), " << services
            << " service(s))\n";
  return 0;
}

int run_logs(const command_line& cl) {
  // -f, as tail spells it, or --follow.
  std::vector<std::string> words;
  bool follow = cl.flag("follow");
  for (const auto& w : cl.positional()) {
    if (w == "-f")
      follow = true;
    else
      words.push_back(w);
  }
  if (words.size() > 1) throw usage_error("logs takes at most one NAME");
  const auto lines = static_cast<std::size_t>(cl.whole_number("lines", 50, 0, 10'000'000));
  return tools::print_logs(host::read_state_dir(config_file(cl)), words.empty() ? "" : words[0], lines, follow);
}

int run_journal(const command_line& cl) {
  if (!cl.positional().empty()) throw usage_error("journal takes options only (--daemon, --service, --since)");
  tools::journal_filter filter;
  filter.daemon = cl.get("daemon", "");
  filter.service = cl.get("service", "");
  if (auto since = cl.get("since")) {
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    filter.since = tools::parse_since(*since, now);
    if (!filter.since)
      throw usage_error("--since: expected a time (2026-12-03T16:00, 2026-12-03) or an age (90s, 30m, 2h, 7d), got \"" +
                        *since + "\"");
  }
  return tools::print_journal(host::read_state_dir(config_file(cl)), filter, cl.flag("json"));
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
  // Camera frames and other large results are megabytes each: keep such blocks in the heap
  // and reuse them, rather than mapping fresh pages (and faulting on every one) per call.
  ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << usage_text;
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1];
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help") {
      std::cout << usage_text;
      return 0;
    }
  try {
    if (command == "daemon")
      return run_daemon(command_line(argc, argv, 2, {"config", "name", "log-level"}, {}));
    if (command == "up") return run_up(command_line(argc, argv, 2, {"config", "log-level"}, {}));
    if (command == "ps") return run_ps(command_line(argc, argv, 2, {"config"}, {"json"}));
    if (command == "down" || command == "reload")
      return run_control(command, command_line(argc, argv, 2, {"config"}, {"json"}));
    if (command == "check") return run_check(command_line(argc, argv, 2, {"config"}, {}));
    if (command == "ns")
      return run_nameserver(
          command_line(argc, argv, 2, {"listen", "lease", "log-level", "secret-file", "tls-cert", "tls-key", "tls-ca"},
                       {"insecure", "tls-verify-clients"}));
    if (command == "plugins") return run_plugins(command_line(argc, argv, 2, {"dir"}, {"json"}));
    if (command == "logs") return run_logs(command_line(argc, argv, 2, {"config", "lines"}, {"follow"}));
    if (command == "journal")
      return run_journal(command_line(argc, argv, 2, {"config", "daemon", "service", "since"}, {"json"}));
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
