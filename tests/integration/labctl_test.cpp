// labctl against a real daemon: output, --json, exit status and error names.
#define BOOST_TEST_MODULE labctl
#include <boost/test/unit_test.hpp>

#include "test_daemon.h"

using namespace labhost::testing;

namespace {

const std::string services = R"({
  "laser": {"driver": "sim_laser"},
  "stage": {"driver": "sim_stage", "params": {"speed_mm_s": 1000.0}},
  "powermeter": {"driver": "sim_powermeter"},
  "camera": {"driver": "sim_camera", "params": {"width": 4, "height": 2}},
  "echo": {"driver": "test_echo"}
})";

run_result labctl(std::vector<std::string> args) {
  args.insert(args.begin(), (bin_dir() / "labctl").string());
  return run(args);
}

struct daemon_fixture {
  test_daemon d{services};
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(labctl_commands, daemon_fixture)

BOOST_AUTO_TEST_CASE(set_then_read_the_wavelength) {
  auto set = labctl({"call", d.address("laser"), "set_wavelength", "1550.5"});
  BOOST_TEST(set.status == 0, set.err);
  BOOST_TEST(set.out == "null\n");
  auto get = labctl({"call", d.address("laser"), "wavelength"});
  BOOST_TEST(get.status == 0, get.err);
  BOOST_TEST(get.out == "1550.5\n");
}

BOOST_AUTO_TEST_CASE(every_sim_instrument_through_labctl) {
  BOOST_TEST(labctl({"call", d.address("laser"), "on"}).status == 0);
  BOOST_TEST(labctl({"call", d.address("laser"), "is_on"}).out == "true\n");
  BOOST_TEST(labctl({"call", d.address("laser"), "set_power", "mw=3.5"}).status == 0);
  BOOST_TEST(labctl({"call", d.address("laser"), "power"}).out == "3.5\n");
  BOOST_TEST(labctl({"call", d.address("stage"), "move_to", "2"}).out == "2.0\n");
  BOOST_TEST(labctl({"call", d.address("stage"), "position"}).out == "2.0\n");
  auto reading = labctl({"call", d.address("powermeter"), "read"});
  BOOST_TEST(reading.status == 0);
  BOOST_TEST(std::stod(reading.out) > 0.0);
  BOOST_TEST(labctl({"call", d.address("camera"), "set_exposure", "3"}).status == 0);
  auto frame = labctl({"--json", "call", d.address("camera"), "grab"});
  BOOST_TEST(frame.out == R"({"dtype":"uint16","count":8,"shape":[2,4],"data":[3,4,5,6,4,5,6,7]})" "\n");
}

BOOST_AUTO_TEST_CASE(json_literals_and_keyword_arguments) {
  BOOST_TEST(labctl({"call", d.address("echo"), "echo", R"({"a":[1,2.5,"x",null,true]})"}).out ==
             R"({"a":[1,2.5,"x",null,true]})" "\n");
  BOOST_TEST(labctl({"call", d.address("echo"), "add", "b=2", "a=40"}).out == "42\n");
  BOOST_TEST(labctl({"call", d.address("echo"), "echo", "plain words"}).out == "\"plain words\"\n");
  BOOST_TEST(labctl({"call", d.address("echo"), "scale", "-1.5", "2"}).out == "-3.0\n");
}

BOOST_AUTO_TEST_CASE(errors_print_their_name_and_exit_non_zero) {
  auto out_of_range = labctl({"call", d.address("laser"), "set_wavelength", "1700"});
  BOOST_TEST(out_of_range.status == 1);
  BOOST_TEST(out_of_range.err.find("driver_error: wavelength 1700") != std::string::npos, out_of_range.err);

  auto json = labctl({"--json", "call", d.address("laser"), "set_wavelength", "1700"});
  BOOST_TEST(json.status == 1);
  BOOST_TEST(json.out.find(R"({"error":{"code":6,"name":"driver_error","message":"wavelength 1700)") == 0u, json.out);

  BOOST_TEST(labctl({"call", d.address("lazer"), "x"}).err.find("no_such_service") != std::string::npos);
  BOOST_TEST(labctl({"call", d.address("laser"), "wavelenght"}).err.find("no_such_method") != std::string::npos);
  auto bad = labctl({"call", d.address("laser"), "set_wavelength", "\"red\""});
  BOOST_TEST(bad.status == 1);
  BOOST_TEST(bad.err.find("bad_arguments: parameter 'nm': expected float64, got string") != std::string::npos, bad.err);
}

BOOST_AUTO_TEST_CASE(describe_and_ping) {
  auto daemon = labctl({"describe", d.address()});
  BOOST_TEST(daemon.status == 0, daemon.err);
  BOOST_TEST(daemon.out.find("daemon test") == 0u, daemon.out);
  BOOST_TEST(daemon.out.find("laser (sim_laser, ready)") != std::string::npos, daemon.out);
  auto laser = labctl({"describe", d.address("laser")});
  BOOST_TEST(laser.out.find("set_wavelength(nm: float64) -> null") != std::string::npos, laser.out);
  auto json = labctl({"describe", "--json", d.address("laser")});
  BOOST_TEST(json.out.find(R"("name":"set_wavelength","params":[{"name":"nm","type":"float64"}])") != std::string::npos, json.out);
  auto ping = labctl({"ping", d.address()});
  BOOST_TEST(ping.status == 0);
  BOOST_TEST(ping.out.find("pong from test in ") == 0u, ping.out);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(usage_and_connection_errors) {
  auto none = labctl({});
  BOOST_TEST(none.status == 2);
  BOOST_TEST(labctl({"call", "lab://nowhere", "x"}).err.find("bad_address") != std::string::npos);
  // A plain word is a name, looked up on the nameserver; none listens on port 1.
  auto unresolved = labctl({"--ns", "127.0.0.1:1", "call", "laser", "x"});
  BOOST_TEST(unresolved.status == 1);
  BOOST_TEST(unresolved.err.find("cannot reach the nameserver 127.0.0.1:1 to look up \"laser\"") != std::string::npos,
             unresolved.err);
  BOOST_TEST(labctl({"frobnicate", "lab://127.0.0.1:1"}).status == 2);
  BOOST_TEST(labctl({"--bogus", "ping", "lab://127.0.0.1:1"}).status == 2);
  // Nothing listens on port 1 of loopback.
  auto refused = labctl({"ping", "lab://127.0.0.1:1"});
  BOOST_TEST(refused.status == 1);
  BOOST_TEST(refused.err.find("connection_lost") != std::string::npos, refused.err);
}

// Issue 12: a bad number printed "stod" and nothing else.
BOOST_AUTO_TEST_CASE(a_bad_number_is_a_usage_error_naming_the_option) {
  for (const std::string bad : {"abc", "5s", "-1", "1e999", ""}) {
    auto timeout = labctl({"--timeout", bad, "ping", "lab://127.0.0.1:1"});
    BOOST_TEST(timeout.status == 2, bad);
    BOOST_TEST(timeout.err.find("labctl: --timeout: expected a number of seconds (0 or more), got \"" + bad + "\"") == 0u,
               timeout.err);
  }
  auto wait = labctl({"lock", "lab://127.0.0.1:1/laser", "--hold", "--wait", "soon"});
  BOOST_TEST(wait.status == 2);
  BOOST_TEST(wait.err.find("--wait: expected a number of seconds (0 or more), got \"soon\"") != std::string::npos,
             wait.err);
  auto lease = run({(bin_dir() / "labhost").string(), "ns", "--listen", "127.0.0.1:0", "--lease", "ten"});
  BOOST_TEST(lease.status == 2);
  BOOST_TEST(lease.err.find("--lease: expected a number of seconds (0 or more), got \"ten\"") != std::string::npos,
             lease.err);
  // A number that parses is taken: here the ping fails for want of a daemon, not of a number.
  auto fine = labctl({"--timeout", "2.5", "ping", "lab://127.0.0.1:1"});
  BOOST_TEST(fine.status == 1);
  BOOST_TEST(fine.err.find("connection_lost") != std::string::npos, fine.err);
}
