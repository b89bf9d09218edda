// Busy polling through the real path: a `labhost daemon` process with host.json's
// busy_poll_us, and clients with client_options::busy_poll, on loopback. Whether a poll finds
// its bytes is up to the scheduler, so these tests check what must hold either way: every
// reply arrives whole and right, and a daemon or client with nothing to read stops polling
// after one window (its CPU time stays far below the time it waits).
#define BOOST_TEST_MODULE busy_poll
#include "protocol/busy_poll.h"

#include <pthread.h>
#include <time.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "test_daemon.h"

using namespace labhost;
using namespace std::chrono_literals;
using labhost::testing::test_daemon;

namespace {

const std::string echo_services = R"({"a": {"driver": "test_echo"}, "b": {"driver": "test_echo"}})";

std::chrono::nanoseconds to_duration(const timespec& ts) {
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

/// CPU time used so far by process `pid` (all its threads).
std::chrono::nanoseconds process_cpu_time(pid_t pid) {
  clockid_t clock;
  BOOST_TEST_REQUIRE(::clock_getcpuclockid(pid, &clock) == 0);
  timespec ts{};
  BOOST_TEST_REQUIRE(::clock_gettime(clock, &ts) == 0);
  return to_duration(ts);
}

/// CPU time used so far by the calling thread.
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return to_duration(ts);
}

client_options polling_for(std::chrono::microseconds window) {
  client_options o;
  o.busy_poll = window;
  o.heartbeats = false;  // nothing but the test's own requests on the connection
  return o;
}

bool several_cpus() { return protocol::usable_cpus() > 1; }

}  // namespace

BOOST_AUTO_TEST_CASE(replies_arrive_whole_while_both_ends_poll) {
  // Windows far longer than any reply takes: the daemon and the client read by polling.
  test_daemon d(echo_services, R"("busy_poll_us": 1000000)");
  auto c = d.connect(polling_for(1s));
  for (std::int64_t i = 0; i < 500; ++i) BOOST_TEST_REQUIRE(c->call("a", "add", {i, 1}).as_int() == i + 1);
  // Large replies too: read in several pieces, straight into place.
  for (std::int64_t count : {1, 1000, 100'000, 3'000'000}) {
    auto ramp = c->call("a", "ramp", {count}).as_array();
    BOOST_TEST_REQUIRE(ramp.count() == static_cast<std::size_t>(count));
    BOOST_TEST(ramp.at<std::uint16_t>(static_cast<std::size_t>(count - 1)) == static_cast<std::uint16_t>(count - 1));
  }
  BOOST_TEST(c->call("b", "echo", {"after the ramps"}).as_string() == "after the ramps");
}

BOOST_AUTO_TEST_CASE(a_daemon_and_client_that_never_poll_serve_as_well) {
  test_daemon d(echo_services, R"("busy_poll_us": 0)");
  auto c = d.connect(polling_for(0us));
  for (std::int64_t i = 0; i < 200; ++i) BOOST_TEST_REQUIRE(c->call("a", "add", {i, i}).as_int() == 2 * i);
  BOOST_TEST(c->call("a", "ramp", {100'000}).as_array().count() == 100'000u);
}

BOOST_AUTO_TEST_CASE(an_idle_daemon_polls_one_window_then_sleeps,
                     *boost::unit_test::precondition([](auto) { return several_cpus(); })) {
  test_daemon d(echo_services, R"("busy_poll_us": 20000)");
  auto c = d.connect(polling_for(0us));
  for (std::int64_t i = 0; i < 50; ++i) c->call("a", "add", {i, 1});
  const auto before = process_cpu_time(d.process().pid());
  // Idle for much longer than the 20 ms window: a daemon that polled on would use it all.
  std::this_thread::sleep_for(500ms);
  const auto idle_cpu = process_cpu_time(d.process().pid()) - before;
  BOOST_TEST(idle_cpu < 100ms, "the idle daemon used " << idle_cpu.count() / 1000 << " us of CPU");
  BOOST_TEST(c->call("a", "add", {1, 2}).as_int() == 3);
}

BOOST_AUTO_TEST_CASE(a_client_waiting_for_a_slow_call_polls_one_window_then_sleeps,
                     *boost::unit_test::precondition([](auto) { return several_cpus(); })) {
  test_daemon d(echo_services, R"("pool_size": 2)");
  auto caller = d.connect(polling_for(20ms));
  auto helper = d.connect(polling_for(0us));
  caller->call("a", "add", {1, 1});  // the policy starts out polling
  auto slow_call = std::async(std::launch::async, [&] {
    const auto cpu_before = thread_cpu_time();
    caller->call("a", "wait_gate", {"slow"});
    return thread_cpu_time() - cpu_before;
  });
  helper->call("b", "wait_entered", {"slow", 1});
  // The call stays inside the driver much longer than the 20 ms window.
  std::this_thread::sleep_for(500ms);
  helper->call("b", "open_gate", {"slow"});
  const auto waiting_cpu = slow_call.get();
  BOOST_TEST(waiting_cpu < 100ms, "the waiting caller used " << waiting_cpu.count() / 1000 << " us of CPU");
}
