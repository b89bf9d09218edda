// labhost up: the supervisor, recovery after power loss, crash loops, waiting instruments,
// reload, and the control commands (ps, down, reload).
#define BOOST_TEST_MODULE host
#include <signal.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <fstream>
#include <functional>
#include <thread>

#include "host/supervisor.h"
#include "test_daemon.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::string addr(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

/// A host folder: plugins/, host.json, and `labhost up` on it.
class test_host {
 public:
  explicit test_host(const std::string& host_json_body) {
    make_plugin_folder(dir_.path());
    write(host_json_body);
  }
  ~test_host() {
    if (up_ && up_->running()) {
      up_->signal(SIGTERM);
      up_->wait_or_kill(30s);
    }
  }

  void write(const std::string& body) {
    std::ofstream(config()) << "{\"plugin_dir\": \"plugins\", \"state_dir\": \"state\", " << body << "}\n";
  }
  std::filesystem::path config() const { return dir_.path() / "host.json"; }

  /// Starts `labhost up`; at debug level unless `host_json_level` (then host.json's level).
  test_process& up(bool host_json_level = false) {
    std::vector<std::string> argv{(bin_dir() / "labhost").string(), "up", "--config", config().string()};
    if (!host_json_level) argv.insert(argv.end(), {"--log-level", "debug"});
    up_ = std::make_unique<test_process>(argv, (dir_.path() / "up.log").string(), true);
    return *up_;
  }
  test_process& up_process() { return *up_; }

  json::object ps() const { return json::parse(host::control_request(config(), "ps")).as_object(); }
  json::object daemon(const std::string& name) const {
    auto all = ps();
    for (auto& d : all["daemons"].as_array())
      if (d.as_object().at("name") == name.c_str()) return d.as_object();
    return {};
  }
  std::string state_of(const std::string& name) const {
    auto d = daemon(name);
    return d.empty() ? "absent" : std::string(d["state"].as_string());
  }
  std::int64_t pid_of(const std::string& name) const { return daemon(name)["pid"].as_int64(); }
  run_result labhost(std::vector<std::string> args) const {
    args.insert(args.begin(), (bin_dir() / "labhost").string());
    args.push_back("--config");
    args.push_back(config().string());
    return run(args);
  }
  std::string log() const {
    std::ifstream in(dir_.path() / "up.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  const std::filesystem::path& folder() const { return dir_.path(); }

 private:
  temp_dir dir_;
  std::unique_ptr<test_process> up_;
};

bool answers(std::uint16_t port, const std::string& service, const std::string& method) {
  client_options o;
  o.heartbeats = false;
  return !client::connect("127.0.0.1", port, o)->call(service, method).is_null();
}

bool registered(std::uint16_t ns_port, const std::string& name, std::uint16_t port) {
  for (const auto& r : list_names(addr(ns_port)))
    if (r.name == name) return r.address == "lab://127.0.0.1:" + std::to_string(port) + "/" + name;
  return false;
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace

BOOST_AUTO_TEST_CASE(everything_comes_back_after_a_power_loss) {
  const auto ns = free_port(), main = free_port(), camera = free_port();
  test_host h(R"("nameserver": {"listen": ")" + addr(ns) + R"("}, "daemons": {
      "main": {"address": ")" + addr(main) + R"(", "services": {"laser": {"driver": "sim_laser"}, "stage": {"driver": "sim_stage"}}},
      "camera": {"address": ")" + addr(camera) + R"(", "services": {"camera": {"driver": "sim_camera", "params": {"width": 8, "height": 8}}}}})");
  auto all_back = [&] {
    return answers(main, "laser", "wavelength") && answers(main, "stage", "position") &&
           answers(camera, "camera", "exposure") && registered(ns, "laser", main) &&
           registered(ns, "stage", main) && registered(ns, "camera", camera);
  };
  auto& first = h.up();
  BOOST_TEST_REQUIRE(eventually(all_back), h.log());
  std::vector<pid_t> pids{first.pid()};
  for (const char* name : {"nameserver", "main", "camera"}) pids.push_back(static_cast<pid_t>(h.pid_of(name)));

  ::kill(-first.pid(), SIGKILL);  // the power goes: every process of the host at once
  first.wait();
  for (pid_t pid : pids) BOOST_TEST_REQUIRE(eventually([&] { return process_gone(pid); }));

  h.up();  // the machine boots and systemd starts labhost up again
  BOOST_TEST(eventually(all_back), h.log());
  BOOST_TEST(locate("laser", addr(ns)).call("wavelength").as_float() == 1550.0);
}

BOOST_AUTO_TEST_CASE(a_killed_daemon_is_restarted_and_its_names_come_back) {
  const auto ns = free_port(), main = free_port();
  test_host h(R"("nameserver": {"listen": ")" + addr(ns) + R"("}, "daemons": {
      "main": {"address": ")" + addr(main) + R"(", "services": {"laser": {"driver": "sim_laser"}}}})");
  h.up();
  BOOST_TEST_REQUIRE(eventually([&] { return registered(ns, "laser", main); }), h.log());
  auto old_pid = static_cast<pid_t>(h.pid_of("main"));
  ::kill(old_pid, SIGKILL);
  BOOST_TEST(eventually([&] { return !registered(ns, "laser", main); }));  // gone with its session
  BOOST_TEST(eventually([&] { return registered(ns, "laser", main) && answers(main, "laser", "wavelength"); }), h.log());
  BOOST_TEST(h.pid_of("main") != old_pid);
  BOOST_TEST(h.daemon("main")["restarts"].as_int64() == 1);
  BOOST_TEST(h.daemon("main")["last_error"].as_string().find("killed by signal 9") == 0u);
}

BOOST_AUTO_TEST_CASE(a_daemon_that_keeps_crashing_is_a_crash_loop_and_the_other_serves) {
  const auto good = free_port(), bad = free_port();
  test_host h(R"("daemons": {
      "good": {"address": ")" + addr(good) + R"(", "services": {"laser": {"driver": "sim_laser"}}},
      "bad": {"address": ")" + addr(bad) + R"(", "services": {"x": {"driver": "test_crash_on_call", "params": {"crash_on_open": true}}}}})");
  h.up();
  BOOST_TEST_REQUIRE(eventually([&] { return h.state_of("bad") == "crash_loop"; }), h.log());
  auto bad_daemon = h.daemon("bad");
  BOOST_TEST(bad_daemon["restarts"].as_int64() >= 3);
  BOOST_TEST(bad_daemon["last_error"].as_string().find("killed by signal 6") == 0u, bad_daemon["last_error"]);
  BOOST_TEST(answers(good, "laser", "wavelength"));
  BOOST_TEST(h.state_of("good") == "running");
  auto ps = h.labhost({"ps"});
  BOOST_TEST(ps.status == 0, ps.err);
  BOOST_TEST(ps.out.find("bad  " + addr(bad) + "  crash_loop") != std::string::npos, ps.out);
  BOOST_TEST(ps.out.find("    laser  ready  sim_laser 1.0.0") != std::string::npos, ps.out);
}

BOOST_AUTO_TEST_CASE(an_instrument_that_opens_late_goes_from_waiting_to_ready) {
  const auto port = free_port();
  test_host h(R"("daemons": {"lab": {"address": ")" + addr(port) + R"(", "services": {
      "late": {"driver": "test_opens_late", "params": {"ready_file": "POWER"}},
      "laser": {"driver": "sim_laser"}}}})");
  const auto power = h.folder() / "power-on";
  h.write(R"("daemons": {"lab": {"address": ")" + addr(port) + R"(", "services": {
      "late": {"driver": "test_opens_late", "params": {"ready_file": ")" + power.string() + R"("}},
      "laser": {"driver": "sim_laser"}}}})");
  h.up();
  BOOST_TEST_REQUIRE(eventually([&] { return answers(port, "laser", "wavelength"); }), h.log());
  client_options o;
  o.heartbeats = false;
  auto c = client::connect("127.0.0.1", port, o);
  auto late = c->describe("late");
  BOOST_TEST(late.state == "waiting");
  BOOST_TEST(late.reason.find("instrument not powered") != std::string::npos, late.reason);
  try {
    c->call("late", "hello");
    BOOST_FAIL("a waiting service answered");
  } catch (const remote_error& e) {
    BOOST_TEST((e.code() == errc::service_unavailable));
    BOOST_TEST(e.message().find("instrument not powered") != std::string::npos, e.message());
  }
  std::ofstream(power) << "on";  // the instrument is switched on
  BOOST_TEST(eventually([&] { return c->describe("late").state == "ready"; }), h.log());
  BOOST_TEST(c->call("late", "hello").as_string() == "opened");
}

BOOST_AUTO_TEST_CASE(reload_adds_removes_and_changes_daemons_and_leaves_the_rest_alone) {
  const auto keep = free_port(), gone = free_port(), changed = free_port(), added = free_port();
  auto daemon = [](const std::string& name, std::uint16_t port, const std::string& extra) {
    return "\"" + name + "\": {\"address\": \"" + addr(port) + "\", \"lockable\": true, \"services\": {\"" +
           name + "_laser\": {\"driver\": \"sim_laser\"" + extra + "}}}";
  };
  test_host h("\"daemons\": {" + daemon("keep", keep, "") + ", " + daemon("gone", gone, "") + ", " +
              daemon("changed", changed, "") + "}");
  h.up();
  BOOST_TEST_REQUIRE(eventually([&] {
    return answers(keep, "keep_laser", "wavelength") && answers(gone, "gone_laser", "wavelength") &&
           answers(changed, "changed_laser", "wavelength");
  }), h.log());
  auto holder = client::connect("127.0.0.1", keep);
  holder->lock("keep_laser");
  auto keep_pid = h.pid_of("keep"), changed_pid = h.pid_of("changed");

  h.write("\"daemons\": {" + daemon("keep", keep, "") + ", " +
          daemon("changed", changed, ", \"params\": {\"wavelength_nm\": 1600.0}") + ", " + daemon("added", added, "") + "}");
  auto reload = h.labhost({"reload"});
  BOOST_TEST(reload.status == 0, reload.err);
  BOOST_TEST(reload.out == "started: added\nstopped: gone\nrestarted: changed\nunchanged: keep\n", reload.out);

  BOOST_TEST(eventually([&] { return answers(added, "added_laser", "wavelength"); }), h.log());
  BOOST_TEST(eventually([&] {
    client_options o;
    o.heartbeats = false;
    return client::connect("127.0.0.1", changed, o)->call("changed_laser", "wavelength").as_float() == 1600.0;
  }), h.log());
  BOOST_TEST(eventually([&] { return h.state_of("gone") == "absent"; }));
  BOOST_TEST(h.pid_of("changed") != changed_pid);
  BOOST_TEST(h.pid_of("keep") == keep_pid);  // untouched...
  BOOST_TEST(holder->lock_status("keep_laser").at(0).yours);  // ... with its lock holder in place

  h.write("\"daemons\": {\"keep\": {\"address\": 7}}");
  auto refused = h.labhost({"reload"});
  BOOST_TEST(refused.status == 1);
  BOOST_TEST(refused.err.find("daemons.keep.address: expected \"HOST:PORT\"") != std::string::npos, refused.err);
  BOOST_TEST(h.pid_of("keep") == keep_pid);  // a broken host.json changes nothing
}

BOOST_AUTO_TEST_CASE(a_second_up_refuses_and_down_stops_everything) {
  const auto port = free_port();
  test_host h(R"("daemons": {"main": {"address": ")" + addr(port) + R"(", "services": {"laser": {"driver": "sim_laser"}}}})");
  auto& up = h.up();
  BOOST_TEST_REQUIRE(eventually([&] { return answers(port, "laser", "wavelength"); }), h.log());
  auto second = h.labhost({"up"});
  BOOST_TEST(second.status == 1);
  BOOST_TEST(second.err.find("another labhost up (pid " + std::to_string(up.pid()) + ") runs on the state directory") !=
                 std::string::npos, second.err);
  auto daemon_pid = static_cast<pid_t>(h.pid_of("main"));
  auto down = h.labhost({"down"});
  BOOST_TEST(down.status == 0, down.err);
  BOOST_TEST(down.out == "stopped\n");
  BOOST_TEST(up.wait_or_kill(30s) == 0);
  BOOST_TEST(process_gone(daemon_pid));
  BOOST_TEST(h.log().find("daemon main stopped") != std::string::npos, h.log());
  auto ps = h.labhost({"ps"});
  BOOST_TEST(ps.status == 1);
  BOOST_TEST(ps.err.find("no labhost up is running") != std::string::npos, ps.err);
}

BOOST_AUTO_TEST_CASE(a_killed_supervisor_leaves_no_orphan_daemon) {
  const auto port = free_port();
  test_host h(R"("daemons": {"main": {"address": ")" + addr(port) + R"(", "services": {"laser": {"driver": "sim_laser"}}}})");
  auto& up = h.up();
  BOOST_TEST_REQUIRE(eventually([&] { return answers(port, "laser", "wavelength"); }), h.log());
  auto daemon_pid = static_cast<pid_t>(h.pid_of("main"));
  up.signal(SIGKILL);  // the supervisor alone
  up.wait();
  BOOST_TEST(eventually([&] { return process_gone(daemon_pid); }));
  h.up();  // and the next up starts cleanly on the same state directory
  BOOST_TEST(eventually([&] { return answers(port, "laser", "wavelength"); }), h.log());
}

BOOST_AUTO_TEST_CASE(logs_go_to_the_file_host_json_names_with_role_and_service) {
  const auto port = free_port();
  test_host h(R"("logging": {"level": "info", "file": "logs/labhost.log", "rotate_mib": 1, "keep": 2},
      "daemons": {"main": {"address": ")" + addr(port) + R"(", "services": {"laser": {"driver": "sim_laser"}}}})");
  auto& up = h.up(true);
  BOOST_TEST_REQUIRE(eventually([&] { return answers(port, "laser", "wavelength"); }), h.log());
  auto read_log = [&] {
    std::ifstream in(h.folder() / "logs" / "labhost.log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  BOOST_TEST(eventually([&] { return read_log().find("info [daemon main] laser ready (sim_laser)") != std::string::npos; }),
             read_log());
  BOOST_TEST(read_log().find("info [supervisor] labhost up on") != std::string::npos, read_log());
  BOOST_TEST(read_log().find("debug") == std::string::npos, read_log());  // level info
  up.signal(SIGTERM);
  BOOST_TEST(up.wait_or_kill(30s) == 0);
}

BOOST_AUTO_TEST_CASE(labhost_logs_shows_what_each_process_said_and_follows) {
  const auto port = free_port();
  const auto ns_port = free_port();
  test_host h(R"("nameserver": {"listen": ")" + addr(ns_port) + R"("},
      "daemons": {"main": {"address": ")" + addr(port) + R"(", "services": {"laser": {"driver": "sim_laser"}}}})");
  h.up();
  BOOST_TEST_REQUIRE(eventually([&] { return answers(port, "laser", "wavelength"); }), h.log());
  auto main_log = h.labhost({"logs", "main"});
  BOOST_TEST(main_log.status == 0, main_log.err);
  BOOST_TEST(main_log.out.find("[supervisor] started (pid ") != std::string::npos, main_log.out);
  BOOST_TEST(main_log.out.find("laser ready (sim_laser)") != std::string::npos, main_log.out);
  auto all = h.labhost({"logs", "--lines", "1000"});
  BOOST_TEST(all.out.find("main  ") != std::string::npos, all.out);  // each line after its process
  auto unknown = h.labhost({"logs", "ghost"});
  BOOST_TEST(unknown.status == 1);
  BOOST_TEST(unknown.err.find("no log of \"ghost\" (there are: main, nameserver)") != std::string::npos, unknown.err);

  // Following: what the supervisor says when the daemon dies comes out as it happens.
  test_process follow({(bin_dir() / "labhost").string(), "logs", "main", "-f", "--lines", "0", "--config",
                       h.config().string()});
  // It follows once a new line of the daemon's (a session it logs, at debug level) comes out.
  bool following = false;
  for (int i = 0; i < 300 && !following; ++i) {
    answers(port, "laser", "wavelength");
    following = follow.read_line(100ms).has_value();
  }
  BOOST_TEST_REQUIRE(following);
  const auto pid = h.pid_of("main");
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  bool told = false;
  for (int i = 0; i < 1000 && !told; ++i) {
    auto line = follow.read_line();
    BOOST_TEST_REQUIRE(line.has_value());
    told = line->find("killed by signal 9") != std::string::npos;
  }
  BOOST_TEST(told);
  follow.signal(SIGTERM);
  BOOST_TEST(follow.wait() == 0);
}
