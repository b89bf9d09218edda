// Busy polling: the policy that decides when a reader polls (protocol/busy_poll.h), and the
// daemon's I/O thread that follows it (server/worker_pool), run in this process.
#define BOOST_TEST_MODULE busy_poll_policy
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "protocol/busy_poll.h"
#include "server/worker_pool.h"

using namespace std::chrono_literals;
using labhost::protocol::busy_poll_policy;
using labhost::protocol::usable_cpus;
using labhost::server::worker_pool;

namespace {

constexpr std::chrono::microseconds window = 50us;
constexpr auto quick = 10us;  // a wait that ended within the window
constexpr auto slow = 5ms;    // one that did not

/// Quick waits that the policy sleeps through before it polls again.
int quick_waits_before_polling(busy_poll_policy& p) {
  int skipped = 0;
  while (p.window_now().count() == 0 && skipped < 1000) {
    p.slept(false, quick);
    ++skipped;
  }
  return skipped;
}

/// CPU time a thread has used.
std::chrono::nanoseconds cpu_time_of(std::thread& t) {
  clockid_t clock;
  BOOST_TEST_REQUIRE(::pthread_getcpuclockid(t.native_handle(), &clock) == 0);
  timespec ts{};
  BOOST_TEST_REQUIRE(::clock_gettime(clock, &ts) == 0);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

/// Runs `handlers` handlers on the pool one after another, each posted once the previous ran.
void run_one_after_another(boost::asio::io_context& io, int handlers) {
  for (int i = 0; i < handlers; ++i) {
    std::promise<void> ran;
    boost::asio::post(io, [&] { ran.set_value(); });
    ran.get_future().wait();
  }
}

/// An io_context with work, run by a worker_pool on its own thread.
struct running_pool {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  worker_pool pool;
  std::thread thread;
  explicit running_pool(std::chrono::microseconds busy_poll) : pool(io, 1, busy_poll) {
    thread = std::thread([this] { pool.run(); });
  }
  /// Stops and joins the pool: its counters are final then (a handler returns before the
  /// pool counts it).
  void stop() {
    if (!thread.joinable()) return;
    work.reset();
    io.stop();
    thread.join();
  }
  ~running_pool() { stop(); }
};

bool several_cpus() { return usable_cpus() > 1; }

}  // namespace

BOOST_AUTO_TEST_SUITE(policy, *boost::unit_test::precondition([](auto) { return several_cpus(); }))

BOOST_AUTO_TEST_CASE(a_new_reader_polls) { BOOST_TEST(busy_poll_policy(window).window_now() == window); }

BOOST_AUTO_TEST_CASE(a_reader_that_keeps_finding_its_bytes_keeps_polling) {
  busy_poll_policy p(window);
  for (int i = 0; i < 100; ++i) {
    BOOST_TEST_REQUIRE(p.window_now() == window);
    p.found_by_polling();
  }
}

BOOST_AUTO_TEST_CASE(vain_polls_back_off_1_3_7_up_to_63_quick_waits) {
  busy_poll_policy p(window);
  for (int expected : {1, 3, 7, 15, 31, 63, 63}) {
    BOOST_TEST_REQUIRE(p.window_now() == window);
    p.slept(true, slow);  // polled in vain, then slept
    BOOST_TEST(quick_waits_before_polling(p) == expected);
  }
}

BOOST_AUTO_TEST_CASE(a_poll_that_finds_its_bytes_halves_the_backoff) {
  busy_poll_policy p(window);
  for (int i = 0; i < 4; ++i) {  // backoff 15
    p.slept(true, slow);
    quick_waits_before_polling(p);
  }
  p.found_by_polling();  // 7
  p.slept(true, slow);   // 15 again
  BOOST_TEST(quick_waits_before_polling(p) == 15);
  p.found_by_polling();  // 7
  p.found_by_polling();  // 3
  p.slept(true, slow);   // 7
  BOOST_TEST(quick_waits_before_polling(p) == 7);
}

BOOST_AUTO_TEST_CASE(slow_waits_never_bring_polling_back) {
  busy_poll_policy p(window);
  p.slept(true, slow);
  for (int i = 0; i < 1000; ++i) p.slept(false, slow);  // slow calls, an idle connection
  BOOST_TEST(p.window_now().count() == 0);
  p.slept(false, quick);
  BOOST_TEST(p.window_now() == window);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(a_zero_window_never_polls) {
  busy_poll_policy p(0us);
  BOOST_TEST(p.window_now().count() == 0);
  p.found_by_polling();
  p.slept(false, quick);
  BOOST_TEST(p.window_now().count() == 0);
}

BOOST_AUTO_TEST_CASE(a_process_kept_on_one_cpu_never_polls) {
  cpu_set_t before;
  BOOST_TEST_REQUIRE(::sched_getaffinity(0, sizeof before, &before) == 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &before)) {
      CPU_SET(cpu, &one);
      break;
    }
  BOOST_TEST_REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
  const unsigned cpus = usable_cpus();
  const auto window_on_one_cpu = busy_poll_policy(window).window_now();
  BOOST_TEST_REQUIRE(::sched_setaffinity(0, sizeof before, &before) == 0);
  BOOST_TEST(cpus == 1u);
  BOOST_TEST(window_on_one_cpu.count() == 0);
}

BOOST_AUTO_TEST_CASE(the_io_thread_finds_work_that_follows_quickly_by_polling,
                     *boost::unit_test::precondition([](auto) { return several_cpus(); })) {
  running_pool p(1s);  // a window far longer than this thread takes to post the next handler
  run_one_after_another(p.io, 20);
  p.stop();
  BOOST_TEST(p.pool.woken_from_sleep() <= 1u);  // the first may find the thread not yet polling
  // Every handler but the one that may have woken the thread was found by a poll. (A handler
  // posted while the last one still ran is found by the poll right after it, not by the
  // window's: under load that can be every one of them.)
  BOOST_TEST(p.pool.found_by_polling() + p.pool.woken_from_sleep() == 20u);
}

BOOST_AUTO_TEST_CASE(without_busy_polling_the_io_thread_never_polls) {
  running_pool p(0us);
  run_one_after_another(p.io, 20);
  p.stop();
  BOOST_TEST(p.pool.found_by_polling() == 0u);
}

BOOST_AUTO_TEST_CASE(an_idle_io_thread_polls_one_window_then_sleeps,
                     *boost::unit_test::precondition([](auto) { return several_cpus(); })) {
  running_pool p(20ms);
  run_one_after_another(p.io, 5);
  const auto cpu_before = cpu_time_of(p.thread);
  // Idle for much longer than the window: a thread that polled on would use this whole time.
  std::this_thread::sleep_for(500ms);
  const auto idle_cpu = cpu_time_of(p.thread) - cpu_before;
  BOOST_TEST(idle_cpu < 100ms, "the idle I/O thread used " << idle_cpu.count() / 1000 << " us of CPU");
  const auto polled_before = p.pool.found_by_polling();
  run_one_after_another(p.io, 1);
  p.stop();
  BOOST_TEST(p.pool.found_by_polling() == polled_before);  // it was asleep, not polling
}

// Issue 12: a handler that threw ended io_context::run, and with it the daemon.
BOOST_AUTO_TEST_CASE(a_handler_that_throws_is_counted_and_the_pool_serves_on) {
  for (auto window : {0us, 50us}) {  // io_context::run(), and the polling loop
    running_pool p(window);
    std::promise<void> served_after;
    boost::asio::post(p.io, [] { throw std::runtime_error("a handler failed"); });
    boost::asio::post(p.io, [] { throw 42; });  // not even a std::exception
    boost::asio::post(p.io, [&] { served_after.set_value(); });
    BOOST_TEST_REQUIRE((served_after.get_future().wait_for(30s) == std::future_status::ready));
    p.stop();
    BOOST_TEST(p.pool.handler_failures() == 2u);
  }
}
