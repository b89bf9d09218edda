// labhost-bench: how fast labhost is, as ratios against the raw floor measured in the same
// run (docs/performance.md says what each case measures and what every --json key means).
//
//   labhost-bench [--quick] [--json] [--cases 1,2,...] [--plugins DIR] [--host-json FILE]
//                 [--pool-size N] [--verbose]
//
// It starts what it measures: a `labhost daemon` (the program next to this one) with the
// simulated drivers on an ephemeral loopback port, and the floor server (this program,
// `labhost-bench floor-server`) as a separate process.
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "bench_cases.h"
#include "bench_daemon.h"
#include "labhost/limits.h"
#include "raw_socket.h"

namespace {

using namespace labhost::bench;
namespace fs = std::filesystem;

constexpr const char* usage_text =
    "usage: labhost-bench [--quick] [--json] [--cases LIST] [--plugins DIR] [--host-json FILE]\n"
    "  --quick          a short run (seconds): fewer calls, 100 idle connections instead of 1,000\n"
    "  --json           print one JSON object (keys in docs/performance.md) instead of the table\n"
    "  --cases LIST     run only these cases, e.g. 1,3 (default: 1,2,3,4,5,6,7)\n"
    "  --plugins DIR    the simulated drivers (default: ../../plugins from this program)\n"
    "  --host-json FILE host.json for case 6 (default: ../../host.json from this program)\n"
    "  --pool-size N    the bench daemon's pool_size (default 4; for diagnosis)\n"
    "  --busy-poll-us N the bench daemon's busy_poll_us and its clients' busy_poll (default 50;\n"
    "                   0: never poll; for diagnosis)\n"
    "  --verbose        progress on stderr (default when stderr is a terminal)\n";

// The targets (docs/performance.md).
constexpr double seq_rtt_target = 1.3;     // labhost / floor, at most
constexpr double par_target = 0.7;         // labhost / floor, at least
constexpr double bulk_target = 0.8;        // labhost / floor, at least
constexpr int idle_threads_margin = 4;     // "the configured pool plus a few"
constexpr double idle_rss_target = 50;     // MiB, under
constexpr double startup_target = 1000;    // ms, under ("well under a second")
constexpr double stream_target = 0.8;      // one subscriber's MB/s / the floor's, at least
constexpr double stream_stalled_target = 0.9;  // the others' frames/s beside a stalled subscriber / alone, at least
constexpr double stream_rss_target = 128;  // MiB the daemon may grow by for a stalled subscriber, under
constexpr unsigned default_pool_size = 4;  // the bench daemon's, as the repository's main daemon
constexpr double lease_s = 3;              // heartbeats every second, so case 5 sees them

/// A bad command line: reported with the usage text, exit status 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct options {
  bool quick = false;
  bool as_json = false;
  bool verbose = false;
  std::set<int> cases{1, 2, 3, 4, 5, 6, 7};
  fs::path plugins;
  fs::path host_json;
  unsigned pool_size = default_pool_size;
  unsigned busy_poll_us = static_cast<unsigned>(labhost::limits::default_busy_poll.count());
};

struct machine_info {
  unsigned cpus = 0;
  std::string cpu_model;
  std::string kernel;
  double load_before = 0;  // 1-minute load average when the run began
};

/// Other work on the machine makes every figure noisy; the report says how busy it was.
double load_average() {
  std::ifstream in("/proc/loadavg");
  double one_minute = 0;
  in >> one_minute;
  return one_minute;
}

machine_info describe_machine() {
  machine_info m;
  m.cpus = std::thread::hardware_concurrency();
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.starts_with("model name")) {
      m.cpu_model = line.substr(line.find(':') + 2);
      break;
    }
  utsname u{};
  if (::uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release;
  m.load_before = load_average();
  return m;
}

/// The first of `candidates` that exists (the last one otherwise, for the error message).
fs::path first_existing(std::initializer_list<fs::path> candidates) {
  std::error_code ec;
  fs::path last;
  for (const auto& c : candidates) {
    last = c;
    if (fs::exists(c, ec)) return fs::weakly_canonical(c, ec);
  }
  return last;
}

options parse_options(int argc, char** argv, const fs::path& exe_dir) {
  options o;
  o.verbose = ::isatty(2) != 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") {
      o.quick = true;
    } else if (a == "--json") {
      o.as_json = true;
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--plugins") {
      o.plugins = next();
    } else if (a == "--host-json") {
      o.host_json = next();
    } else if (a == "--pool-size") {
      int n = 0;
      try {
        n = std::stoi(next());
      } catch (const std::exception&) {
      }
      if (n < 1 || n > 256) throw usage_error("--pool-size: expected 1 to 256");
      o.pool_size = static_cast<unsigned>(n);
    } else if (a == "--busy-poll-us") {
      int n = -1;
      try {
        n = std::stoi(next());
      } catch (const std::exception&) {
      }
      if (n < 0 || n > 1'000'000) throw usage_error("--busy-poll-us: expected 0 to 1000000");
      o.busy_poll_us = static_cast<unsigned>(n);
    } else if (a == "--cases") {
      o.cases.clear();
      std::stringstream list(next());
      std::string item;
      while (std::getline(list, item, ',')) {
        int n = 0;
        try {
          n = std::stoi(item);
        } catch (const std::exception&) {
        }
        if (n < 1 || n > 7) throw usage_error("--cases: \"" + item + "\" is not a case 1 to 7");
        o.cases.insert(n);
      }
    } else if (a == "--help" || a == "-h") {
      std::cout << usage_text;
      std::exit(0);
    } else {
      throw usage_error("unknown option \"" + a + "\"");
    }
  }
  if (o.plugins.empty()) o.plugins = first_existing({exe_dir / "../../plugins", LABHOST_BENCH_PLUGIN_DIR});
  if (o.host_json.empty())
    o.host_json =
        first_existing({exe_dir / "../../host.json", fs::path(LABHOST_BENCH_SOURCE_DIR) / "host.json"});
  return o;
}

/// The idle case holds a thousand connections on each side of loopback.
void raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

struct report {
  const options& opts;
  const bench_plan& plan;
  const machine_info& machine;
  const bench_results& r;

  bool has(int c) const { return opts.cases.count(c) > 0; }
  bool seq_met() const { return ratio(r.seq_rtt_us, r.seq_rtt_floor_us) <= seq_rtt_target; }
  bool par_met() const { return ratio(r.par_calls_s, r.par_floor_calls_s) >= par_target; }
  bool bulk_met() const { return ratio(r.bulk_MBps, r.bulk_floor_MBps) >= bulk_target; }
  bool idle_threads_met() const {
    return r.idle_threads <= static_cast<int>(opts.pool_size) + idle_threads_margin;
  }
  bool idle_rss_met() const { return r.idle_rss_MiB < idle_rss_target; }
  bool startup_met() const { return r.startup_ms < startup_target; }
  bool stream_met() const { return ratio(r.stream_MBps, r.stream_floor_MBps) >= stream_target; }
  bool stream_stalled_met() const {
    return r.stream_stalled_ratio >= stream_stalled_target;
  }
  bool stream_rss_met() const { return r.stream_stalled_rss_growth_MiB < stream_rss_target; }

  std::vector<std::string> missed() const {
    std::vector<std::string> m;
    if (has(1) && !seq_met()) m.push_back("seq_rtt_ratio");
    if (has(2) && !par_met()) m.push_back("par_ratio");
    if (has(3) && !bulk_met()) m.push_back("bulk_ratio");
    if (has(5) && !idle_threads_met()) m.push_back("idle_threads");
    if (has(5) && !idle_rss_met()) m.push_back("idle_rss_MiB");
    if (has(6) && !startup_met()) m.push_back("startup_ms");
    if (has(7) && !stream_met()) m.push_back("stream_ratio");
    if (has(7) && !stream_stalled_met()) m.push_back("stream_stalled_ratio");
    if (has(7) && !stream_rss_met()) m.push_back("stream_stalled_rss_growth_MiB");
    return m;
  }

  /// A number for JSON with at most `digits` decimals and no trailing zeros ("64.1", "41").
  static std::string number(double v, int digits) {
    std::string text = fixed(v, digits);
    if (text.find('.') != std::string::npos) {
      text.erase(text.find_last_not_of('0') + 1);
      if (text.back() == '.') text.pop_back();
    }
    return text == "-0" ? "0" : text;
  }

  /// One JSON object, keys in a stable order; a case that did not run gives null values.
  std::string to_json() const {
    std::string out = "{";
    auto put = [&](const char* key, bool measured, const std::string& v) {
      out += (out.size() > 1 ? ", \"" : "\"") + std::string(key) + "\": " + (measured ? v : "null");
    };
    auto num = [](double v, int digits) { return number(v, digits); };
    put("seq_rtt_us", has(1), num(r.seq_rtt_us, 1));
    put("seq_rtt_p99_us", has(1), num(r.seq_rtt_p99_us, 1));
    put("seq_rtt_floor_us", has(1), num(r.seq_rtt_floor_us, 1));
    put("seq_rtt_floor_p99_us", has(1), num(r.seq_rtt_floor_p99_us, 1));
    put("seq_rtt_ratio", has(1), num(ratio(r.seq_rtt_us, r.seq_rtt_floor_us), 3));
    put("seq_ping_us", has(1), num(r.seq_ping_us, 1));
    put("seq_rtt_floor_one_cpu_us", has(1), num(r.seq_rtt_floor_one_cpu_us, 1));
    put("par_clients", has(2), std::to_string(plan.par_clients));
    put("par_calls_s", has(2), num(r.par_calls_s, 0));
    put("par_floor_calls_s", has(2), num(r.par_floor_calls_s, 0));
    put("par_ratio", has(2), num(ratio(r.par_calls_s, r.par_floor_calls_s), 3));
    put("bulk_bytes", has(3), std::to_string(r.sizes.grab_result));
    put("bulk_MBps", has(3), num(r.bulk_MBps, 0));
    put("bulk_floor_MBps", has(3), num(r.bulk_floor_MBps, 0));
    put("bulk_ratio", has(3), num(ratio(r.bulk_MBps, r.bulk_floor_MBps), 3));
    put("bulk_driver_ms", has(3), num(r.bulk_driver_ms, 2));
    put("connect_us", has(4), num(r.connect_us, 1));
    put("connect_floor_us", has(4), num(r.connect_floor_us, 1));
    put("connect_ratio", has(4), num(ratio(r.connect_us, r.connect_floor_us), 3));
    put("idle_conns", has(5), std::to_string(r.idle_conns));
    put("idle_threads", has(5), std::to_string(r.idle_threads));
    put("idle_rss_MiB", has(5), num(r.idle_rss_MiB, 1));
    put("idle_base_threads", has(5), std::to_string(r.idle_base_threads));
    put("idle_base_rss_MiB", has(5), num(r.idle_base_rss_MiB, 1));
    put("idle_rtt_us", has(5), num(r.idle_rtt_us, 1));
    put("idle_open_ms", has(5), num(r.idle_open_ms, 1));
    put("startup_ms", has(6), num(r.startup_ms, 1));
    put("startup_services", has(6), std::to_string(r.startup_services));
    put("stream_fps", has(7), num(r.stream_fps, 1));
    put("stream_MBps", has(7), num(r.stream_MBps, 0));
    put("stream_floor_MBps", has(7), num(r.stream_floor_MBps, 0));
    put("stream_ratio", has(7), num(ratio(r.stream_MBps, r.stream_floor_MBps), 3));
    put("stream_shared_fps", has(7), num(r.stream_shared_fps, 1));
    put("stream_shared_stalled_fps", has(7), num(r.stream_shared_stalled_fps, 1));
    put("stream_stalled_ratio", has(7), num(r.stream_stalled_ratio, 3));
    put("stream_stalled_rss_growth_MiB", has(7), num(r.stream_stalled_rss_growth_MiB, 1));
    put("call_frame_bytes", true, std::to_string(r.sizes.call));
    put("result_frame_bytes", true, std::to_string(r.sizes.result));
    put("pool_size", true, std::to_string(opts.pool_size));
    put("busy_poll_us", true, std::to_string(opts.busy_poll_us));
    put("lease_s", true, num(lease_s, 1));
    put("cpus", true, std::to_string(machine.cpus));
    put("load_before", true, num(machine.load_before, 2));
    put("quick", true, plan.quick ? "true" : "false");
    std::string missed_list = "[";
    for (const auto& name : missed()) missed_list += (missed_list.size() > 1 ? ", \"" : "\"") + name + "\"";
    put("missed", true, missed_list + "]");
    return out + "}";
  }

  void print_table(std::ostream& out) const {
    out << "labhost-bench (" << (plan.quick ? "quick" : "full") << " run) on " << machine.cpus << " CPU(s), "
        << machine.cpu_model << ", " << machine.kernel << "\n"
        << "floor: raw blocking TCP ping-pong over loopback (TCP_NODELAY), same message sizes (" << r.sizes.call
        << "-byte call, " << r.sizes.result << "-byte result), separate process\n"
        << "labhost: daemon pool_size " << opts.pool_size << ", busy_poll_us " << opts.busy_poll_us
        << " (daemon and clients)\n"
        << "load average when the run began: " << fixed(machine.load_before, 2)
        << (machine.load_before > 0.5 * machine.cpus ? " (a busy machine: figures are noisy)" : "") << "\n\n";
    out << std::left << std::setw(44) << "case" << std::right << std::setw(8) << "ratio" << std::setw(12)
        << "labhost" << std::setw(12) << "floor"
        << "  target\n";
    auto verdict = [](bool met) { return met ? "met" : "MISSED"; };
    auto row = [&](const std::string& name, double rat, double lab, double flo, int digits,
                   const std::string& target) {
      out << std::left << std::setw(44) << name << std::right << std::fixed;
      if (rat > 0)
        out << std::setw(8) << std::setprecision(2) << rat;
      else
        out << std::setw(8) << "";
      out << std::setw(12) << std::setprecision(digits) << lab;
      if (flo > 0)
        out << std::setw(12) << std::setprecision(digits) << flo;
      else
        out << std::setw(12) << "-";
      out << (target.empty() ? "" : "  " + target) << "\n";
    };
    if (has(1)) {
      row("1 small call, 1 client: median us", ratio(r.seq_rtt_us, r.seq_rtt_floor_us), r.seq_rtt_us,
          r.seq_rtt_floor_us, 1, "<= " + fixed(seq_rtt_target, 1) + "  " + verdict(seq_met()));
      row("  p99 us", ratio(r.seq_rtt_p99_us, r.seq_rtt_floor_p99_us), r.seq_rtt_p99_us,
          r.seq_rtt_floor_p99_us, 1, "");
      row("  labhost ping (no service): median us", ratio(r.seq_ping_us, r.seq_rtt_floor_us), r.seq_ping_us,
          r.seq_rtt_floor_us, 1, "");
      row("  floor with both ends on one CPU: median", ratio(r.seq_rtt_us, r.seq_rtt_floor_one_cpu_us), r.seq_rtt_us,
          r.seq_rtt_floor_one_cpu_us, 1, "");
    }
    if (has(2))
      row("2 small call, " + std::to_string(plan.par_clients) + " clients: calls/s",
          ratio(r.par_calls_s, r.par_floor_calls_s), r.par_calls_s, r.par_floor_calls_s, 0,
          ">= " + fixed(par_target, 1) + "  " + verdict(par_met()));
    if (has(3)) {
      row("3 8 MiB typed array (camera grab): MB/s", ratio(r.bulk_MBps, r.bulk_floor_MBps), r.bulk_MBps,
          r.bulk_floor_MBps, 0, ">= " + fixed(bulk_target, 1) + "  " + verdict(bulk_met()));
      row("  driver's own grab(), in process: ms", 0, r.bulk_driver_ms, 0, 2, "");
    }
    if (has(4))
      row("4 connect + hello + first call: median us", ratio(r.connect_us, r.connect_floor_us), r.connect_us,
          r.connect_floor_us, 1, "");
    if (has(5)) {
      row("5 " + std::to_string(r.idle_conns) + " idle connections: daemon threads", 0, r.idle_threads, 0, 0,
          "<= pool " + std::to_string(opts.pool_size) + " + " + std::to_string(idle_threads_margin) + "  " +
              verdict(idle_threads_met()) + " (" + std::to_string(r.idle_base_threads) + " before)");
      row("  daemon resident memory: MiB", 0, r.idle_rss_MiB, 0, 1,
          "< " + fixed(idle_rss_target, 0) + "  " + verdict(idle_rss_met()) + " (" +
              fixed(r.idle_base_rss_MiB, 1) + " before)");
      row("  small call meanwhile: median us (floor: 1)", ratio(r.idle_rtt_us, r.seq_rtt_floor_us),
          r.idle_rtt_us, has(1) ? r.seq_rtt_floor_us : 0, 1, "");
    }
    if (has(6))
      row("6 labhost up, repository host.json: ms", 0, r.startup_ms, 0, 1,
          "< " + fixed(startup_target, 0) + "  " + verdict(startup_met()) + " (" +
              std::to_string(r.startup_services) + " services)");
    if (has(7)) {
      row("7 camera frames streamed, 1 subscriber: MB/s", ratio(r.stream_MBps, r.stream_floor_MBps), r.stream_MBps,
          r.stream_floor_MBps, 0, ">= " + fixed(stream_target, 1) + "  " + verdict(stream_met()));
      row("  frames/s", 0, r.stream_fps, 0, 1, "");
      row("  3 subscribers, each: frames/s (alone)", 0, r.stream_shared_fps, 0, 1, "");
      row("  the same beside a 4th that stopped reading", r.stream_stalled_ratio,
          r.stream_shared_stalled_fps, r.stream_shared_fps, 1,
          ">= " + fixed(stream_stalled_target, 1) + "  " + verdict(stream_stalled_met()));
      row("  daemon memory grown meanwhile: MiB", 0, r.stream_stalled_rss_growth_MiB, 0, 1,
          "< " + fixed(stream_rss_target, 0) + "  " + verdict(stream_rss_met()));
    }
    out << "\nratio: labhost / floor (for calls/s and MB/s, higher is better; for times, lower is)\n";
  }

  static std::string fixed(double v, int digits) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
  }
};

int run(int argc, char** argv) {
  const fs::path self = fs::read_symlink("/proc/self/exe");
  const fs::path exe_dir = self.parent_path();
  options opts = parse_options(argc, argv, exe_dir);
  bench_plan plan = opts.quick ? bench_plan::quick_plan() : bench_plan::full();
  plan.client.busy_poll = std::chrono::microseconds(opts.busy_poll_us);
  const machine_info machine = describe_machine();
  auto progress = [&](const std::string& line) {
    if (opts.verbose) std::cerr << "labhost-bench: " << line << std::endl;
  };
  raise_open_file_limit();

  const fs::path labhost = exe_dir / "labhost";
  if (!fs::exists(labhost)) throw std::runtime_error("no labhost program at " + labhost.string());
  if (!fs::exists(opts.plugins / "sim_laser.so") && !fs::exists(opts.plugins / "libsim_laser.so"))
    throw std::runtime_error("no simulated drivers in " + opts.plugins.string() + " (use --plugins DIR)");

  temp_dir folder;
  bench_results r;
  {
    daemon_settings settings{labhost, opts.plugins, opts.pool_size, opts.busy_poll_us, 4096, lease_s};
    bench_daemon daemon(settings, folder.path());
    floor_process threaded_floor(self, true, folder.path());
    floor_process iterative_floor(self, false, folder.path());
    progress("daemon pid " + std::to_string(daemon.pid()) + " on port " + std::to_string(daemon.port()));
    r.sizes = probe_frame_sizes(daemon.port());
    if (opts.cases.count(1)) {
      progress("case 1: one client, sequential small calls");
      const int one_cpu = first_usable_cpu();
      floor_process one_cpu_floor(self, true, folder.path(), one_cpu);
      run_sequential(daemon.port(), threaded_floor.port(), one_cpu_floor.port(), one_cpu, plan, r);
    }
    if (opts.cases.count(2)) {
      progress("case 2: " + std::to_string(plan.par_clients) + " clients in parallel");
      run_parallel(daemon.port(), threaded_floor.port(), plan, r);
    }
    if (opts.cases.count(3)) {
      progress("case 3: 8 MiB typed array");
      run_bulk(daemon.port(), threaded_floor.port(), opts.plugins, plan, r);
    }
    if (opts.cases.count(4)) {
      progress("case 4: connect + hello + first call");
      run_connect(daemon.port(), iterative_floor.port(), plan, r);
    }
    if (opts.cases.count(5)) {
      progress("case 5: " + std::to_string(plan.idle_conns) + " idle connections");
      run_idle(daemon.port(), daemon.pid(), plan, r, progress);
    }
    if (opts.cases.count(7)) {
      progress("case 7: camera frames streamed to subscribers");
      run_stream(daemon.port(), daemon.pid(), threaded_floor.port(), plan, r);
    }
  }
  if (opts.cases.count(6)) {
    progress("case 6: labhost up on " + opts.host_json.string());
    run_startup(labhost, opts.host_json, opts.plugins, folder.path(), plan, r);
  }

  report rep{opts, plan, machine, r};
  if (opts.as_json)
    std::cout << rep.to_json() << std::endl;
  else
    rep.print_table(std::cout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 2 && std::string(argv[1]) == "floor-server") {
      // floor-server [--mode threaded|iterative] [--cpu N]
      bool threaded = true;
      for (int i = 2; i + 1 < argc; i += 2) {
        std::string option = argv[i];
        if (option == "--mode")
          threaded = std::string(argv[i + 1]) != "iterative";
        else if (option == "--cpu")
          pin_to_cpu(std::stoi(argv[i + 1]));
        else
          throw usage_error("floor-server: unknown option \"" + option + "\"");
      }
      return run_floor_server(threaded);
    }
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "labhost-bench: " << e.what() << "\n" << usage_text;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "labhost-bench: " << e.what() << "\n";
    return 1;
  }
}
