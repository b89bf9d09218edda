// The nameserver: registrations that belong to sessions, and daemons that keep their names
// registered whatever the order in which things start and stop.
#define BOOST_TEST_MODULE nameserver
#include <signal.h>
#include <stdlib.h>

#include <boost/test/unit_test.hpp>
#include <thread>

#include "test_daemon.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;

namespace {

const std::string services = R"({
  "laser": {"driver": "sim_laser", "description": "Tunable laser", "metadata": {"room": "B12"}},
  "powermeter": {"driver": "sim_powermeter"}})";


std::shared_ptr<client> connect_to(const test_nameserver& ns, const std::string& name) {
  client_options o;
  o.client_name = name;
  return client::connect("127.0.0.1", ns.port(), o);
}

/// Waits (bounded: 15 s) until `name` is registered, or unregistered when `present` is false.
/// The registrar acts on its own schedule, so this polls the nameserver's state.
bool wait_for_name(const std::string& nameserver, const std::string& name, bool present) {
  for (int i = 0; i < 750; ++i) {
    try {
      bool found = false;
      for (const auto& r : list_names(nameserver)) found = found || r.name == name;
      if (found == present) return true;
    } catch (const remote_error&) {
      // the nameserver is (re)starting
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::string registering(const std::string& nameserver) {
  return R"("register_with": [")" + nameserver + "\"]";
}

}  // namespace

BOOST_AUTO_TEST_CASE(names_are_registered_looked_up_listed_and_removed) {
  test_nameserver ns;
  auto a = connect_to(ns, "daemon a@test");
  a->call("nameserver", "register", {"laser", "lab://127.0.0.1:7701/laser", map{{"room", "B12"}}});
  a->call("nameserver", "register", {"lamp", "lab://127.0.0.1:7701/lamp", map{{"room", "C3"}}});
  auto b = connect_to(ns, "daemon b@test");
  auto found = b->call("nameserver", "lookup", {"laser"});
  BOOST_TEST(found.find("address")->as_string() == "lab://127.0.0.1:7701/laser");
  BOOST_TEST(found.find("owner")->as_string() == "daemon a@test");
  BOOST_TEST(b->call("nameserver", "list", {"la"}).as_list().size() == 2u);
  BOOST_TEST(b->call("nameserver", "list", {"", map{{"room", "C3"}}}).as_list().size() == 1u);
  BOOST_TEST(b->call("nameserver", "list", {}, {{"prefix", "x"}}).as_list().empty());

  auto taken = error_of([&] { b->call("nameserver", "register", {"laser", "lab://127.0.0.1:9/laser", map{}}); });
  BOOST_TEST((taken.code == errc::name_taken));
  BOOST_TEST(taken.message.find("daemon a@test") != std::string::npos, taken.message);
  BOOST_TEST((error_of([&] { b->call("nameserver", "remove", {"laser"}); }).code == errc::not_authorised));
  BOOST_TEST((error_of([&] { b->call("nameserver", "lookup", {"nothing"}); }).code == errc::no_such_name));
  BOOST_TEST((error_of([&] { b->call("nameserver", "register", {"x", "http://x", map{}}); }).code == errc::bad_arguments));

  a->call("nameserver", "remove", {"lamp"});
  BOOST_TEST((error_of([&] { b->call("nameserver", "lookup", {"lamp"}); }).code == errc::no_such_name));
  BOOST_TEST(b->describe("nameserver").methods.size() == 4u);
}

BOOST_AUTO_TEST_CASE(a_registration_disappears_with_its_session) {
  test_nameserver ns;
  auto a = connect_to(ns, "daemon a@test");
  a->call("nameserver", "register", {"laser", "lab://127.0.0.1:7701/laser", map{}});
  a->close();
  BOOST_TEST(wait_for_name(ns.address(), "laser", false));
  auto b = connect_to(ns, "daemon b@test");  // now free for another daemon
  b->call("nameserver", "register", {"laser", "lab://127.0.0.1:7702/laser", map{}});
}

BOOST_AUTO_TEST_CASE(a_daemon_registers_its_services_and_clients_find_them) {
  test_nameserver ns;
  test_daemon d(services, "", registering(ns.address()));
  BOOST_TEST_REQUIRE(wait_for_name(ns.address(), "powermeter", true));
  auto names = list_names(ns.address());
  BOOST_TEST_REQUIRE(names.size() == 2u);
  const auto& laser = names[0].name == "laser" ? names[0] : names[1];
  BOOST_TEST(laser.address == d.address("laser"));
  BOOST_TEST(laser.metadata.find("daemon")->as_string() == "test");
  BOOST_TEST(laser.metadata.find("driver")->as_string() == "sim_laser");
  BOOST_TEST(laser.metadata.find("room")->as_string() == "B12");

  auto proxy = locate("laser", ns.address());
  BOOST_TEST(proxy.call("wavelength").as_float() == 1550.0);

  auto ls = run({(bin_dir() / "labctl").string(), "--ns", ns.address(), "ls"});
  BOOST_TEST(ls.status == 0, ls.err);
  BOOST_TEST(ls.out.find("laser  " + d.address("laser") + "  Tunable laser\n") != std::string::npos, ls.out);
  auto call = run({(bin_dir() / "labctl").string(), "--ns", ns.address(), "call", "laser", "wavelength"});
  BOOST_TEST(call.out == "1550.0\n", call.err);
  auto json = run({(bin_dir() / "labctl").string(), "--ns", ns.address(), "ls", "--json", "power"});
  BOOST_TEST(json.out.find(R"([{"name":"powermeter","address":")" + d.address("powermeter")) == 0u, json.out);

  // LABHOST_NS is the default nameserver of every client.
  ::setenv("LABHOST_NS", ns.address().c_str(), 1);
  BOOST_TEST(run({(bin_dir() / "labctl").string(), "call", "laser", "wavelength"}).out == "1550.0\n");
  BOOST_TEST(locate("powermeter").call("read").is_float());
  ::unsetenv("LABHOST_NS");
}

BOOST_AUTO_TEST_CASE(names_of_a_killed_daemon_disappear_and_come_back_with_it) {
  test_nameserver ns;
  std::uint16_t port;
  {
    test_daemon d(services, "", registering(ns.address()));
    port = d.port();
    BOOST_TEST_REQUIRE(wait_for_name(ns.address(), "laser", true));
    d.process().signal(SIGKILL);
    d.process().wait();
    BOOST_TEST(wait_for_name(ns.address(), "laser", false));
  }
  test_daemon again(services, R"("address": "127.0.0.1:)" + std::to_string(port) + "\"", registering(ns.address()));
  BOOST_TEST(wait_for_name(ns.address(), "laser", true));
  BOOST_TEST(locate("laser", ns.address()).call("wavelength").as_float() == 1550.0);
}

BOOST_AUTO_TEST_CASE(daemons_register_once_a_late_nameserver_appears) {
  std::uint16_t ns_port = free_port();
  const std::string ns_address = "127.0.0.1:" + std::to_string(ns_port);
  test_daemon d(services, "", registering(ns_address));  // the nameserver is not there yet
  BOOST_TEST(d.connect()->call("laser", "wavelength").as_float() == 1550.0);  // serving anyway
  test_nameserver ns(ns_port);
  BOOST_TEST(wait_for_name(ns.address(), "laser", true));
  BOOST_TEST(wait_for_name(ns.address(), "powermeter", true));
}

BOOST_AUTO_TEST_CASE(names_come_back_after_the_nameserver_restarts) {
  std::uint16_t ns_port;
  auto first = std::make_unique<test_nameserver>();
  ns_port = first->port();
  test_daemon d(services, "", registering(first->address()));
  BOOST_TEST_REQUIRE(wait_for_name(first->address(), "laser", true));
  first->process().signal(SIGKILL);
  first->process().wait();
  first.reset();
  test_nameserver second(ns_port);  // empty at start
  BOOST_TEST(wait_for_name(second.address(), "laser", true));
  BOOST_TEST(wait_for_name(second.address(), "powermeter", true));
}
