// Server types (threaded, multiplexed) and instance modes (single, session, percall).
#define BOOST_TEST_MODULE server_types
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <future>

#include "protocol/messages.h"
#include "raw_client.h"
#include "test_daemon.h"

using namespace labhost;
using labhost::testing::test_daemon;

namespace {

const std::string two_services = R"({"a": {"driver": "test_echo"}, "b": {"driver": "test_echo"}})";

/// A FIFO whose open() for writing returns once a driver call opened it for reading.
struct fifo_gate {
  std::filesystem::path path;
  int fd = -1;
  explicit fifo_gate(std::filesystem::path p) : path(std::move(p)) {
    BOOST_TEST_REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  }
  void wait_entered() { fd = ::open(path.c_str(), O_WRONLY); }  // blocks until the reader is in
  void release() {
    BOOST_TEST_REQUIRE(::write(fd, "x", 1) == 1);
    ::close(fd);
  }
};

/// Threads that ThreadSanitizer adds to a process that starts threads (its background thread).
#if defined(__SANITIZE_THREAD__)
constexpr int sanitizer_threads = 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int sanitizer_threads = 1;
#else
constexpr int sanitizer_threads = 0;
#endif
#else
constexpr int sanitizer_threads = 0;
#endif

/// Threads of a process, from /proc.
/// The audit journal writes from a thread of its own (server/journal.h).
constexpr int journal_threads = 1;

int thread_count(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

}  // namespace

BOOST_AUTO_TEST_CASE(threaded_runs_another_service_while_one_is_blocked) {
  test_daemon d(two_services, R"("server_type": "threaded", "pool_size": 2)");
  auto c = d.connect();
  fifo_gate gate(d.folder() / "gate");
  auto blocked = std::async(std::launch::async, [&] { return c->call("a", "wait_fifo", {gate.path.string()}).as_int(); });
  gate.wait_entered();
  std::int64_t b_seq = c->call("b", "sequence").as_int();  // completes while a is blocked
  gate.release();
  BOOST_TEST(b_seq < blocked.get());
}

BOOST_AUTO_TEST_CASE(multiplexed_runs_one_call_at_a_time_in_arrival_order) {
  test_daemon d(two_services, R"("server_type": "multiplexed")");
  auto c1 = d.connect();
  labhost::testing::raw_client c2(d.port());
  c2.hello();
  fifo_gate gate(d.folder() / "gate");
  auto blocked = std::async(std::launch::async, [&] { return c1->call("a", "wait_fifo", {gate.path.string()}).as_int(); });
  gate.wait_entered();
  // b's call is sent while a's call holds the daemon's only thread. Issue 12: released before
  // the daemon had b's call, the gate proved nothing; wait until the call is queued at the
  // daemon, unread (or answered, which would be wrong: it must wait for a).
  const auto call = protocol::encode_frame(protocol::message_type::call, 9,
                                           protocol::to_value(protocol::call_message{"b", "sequence", {}, {}}));
  c2.send(call);
  BOOST_TEST_REQUIRE(labhost::testing::eventually([&] {
    return c2.reply_waiting() || labhost::testing::unread_bytes(d.port(), c2.local_port()) == call.size();
  }));
  BOOST_TEST(!c2.reply_waiting());  // b did not run beside a
  gate.release();
  std::int64_t a_exit = blocked.get();
  auto b_reply = c2.receive();
  BOOST_TEST_REQUIRE(b_reply.has_value());
  BOOST_TEST(b_reply->second.as_int() > a_exit);
}

BOOST_AUTO_TEST_CASE(multiplexed_daemon_describes_itself_with_one_thread) {
  // /proc tells how many threads the daemon runs: one, whatever pool_size says...
  test_daemon quiet(two_services, R"("server_type": "multiplexed", "pool_size": 8)", R"("journal": {"enabled": false})");
  BOOST_TEST(thread_count(quiet.process().pid()) == 1);
  // ... and the audit journal's writer, when there is a journal (and with it, under
  // ThreadSanitizer, the sanitizer's own thread, started with the process's second one).
  test_daemon d(two_services, R"("server_type": "multiplexed", "pool_size": 8)");
  BOOST_TEST(thread_count(d.process().pid()) == 1 + journal_threads + sanitizer_threads);
}

BOOST_AUTO_TEST_CASE(threaded_daemon_runs_no_thread_per_connection) {
  test_daemon d(two_services, R"("server_type": "threaded", "pool_size": 3)");
  std::vector<std::shared_ptr<client>> clients;
  for (int i = 0; i < 50; ++i) clients.push_back(d.connect());
  for (auto& c : clients) BOOST_TEST(c->call("a", "add", {1, 1}).as_int() == 2);
  // While calls are quick one thread serves everyone; the pool's watchdog is the other.
  BOOST_TEST(thread_count(d.process().pid()) <= 3 + 1 + journal_threads + sanitizer_threads);
}

BOOST_AUTO_TEST_CASE(blocked_calls_bring_in_pool_threads_up_to_the_pool_size) {
  test_daemon d(R"({"a": {"driver": "test_echo"}, "b": {"driver": "test_echo"}, "c": {"driver": "test_echo"},
                   "d": {"driver": "test_echo"}})", R"("server_type": "threaded", "pool_size": 2)");
  auto c = d.connect();
  fifo_gate gate_a(d.folder() / "a"), gate_b(d.folder() / "b");
  auto in_a = std::async(std::launch::async, [&] { return c->call("a", "wait_fifo", {gate_a.path.string()}).as_int(); });
  gate_a.wait_entered();
  // a holds one thread; another takes over the I/O and runs b's call...
  auto in_b = std::async(std::launch::async, [&] { return c->call("b", "wait_fifo", {gate_b.path.string()}).as_int(); });
  gate_b.wait_entered();
  // ... and with both pool threads in calls, c's call waits for one of them to come back.
  auto queued = std::async(std::launch::async, [&] { return c->call("c", "sequence").as_int(); });
  gate_a.release();
  std::int64_t a_exit = in_a.get();
  BOOST_TEST(queued.get() > a_exit);
  gate_b.release();
  in_b.get();
  // The extra pool thread may not have left yet: at most the pool and the watchdog.
  BOOST_TEST(thread_count(d.process().pid()) <= 2 + 1 + journal_threads + sanitizer_threads);
}

BOOST_AUTO_TEST_CASE(single_instance_is_shared_by_every_session) {
  test_daemon d(R"({"s": {"driver": "test_echo", "mode": "single"}})");
  auto c1 = d.connect();
  auto c2 = d.connect();
  BOOST_TEST(c1->call("s", "calls").as_int() == 1);
  BOOST_TEST(c2->call("s", "calls").as_int() == 2);  // same instance
  BOOST_TEST(c2->call("s", "created").as_int() == 1);
}

BOOST_AUTO_TEST_CASE(session_instances_are_made_per_session_and_closed_when_it_ends) {
  test_daemon d(R"({"s": {"driver": "test_echo", "mode": "session"}})");
  auto c1 = d.connect();
  BOOST_TEST(c1->call("s", "created").as_int() == 1);  // made at the session's first call
  BOOST_TEST(c1->call("s", "calls").as_int() == 1);
  BOOST_TEST(c1->call("s", "calls").as_int() == 2);  // the same instance again
  auto c2 = d.connect();
  BOOST_TEST(c2->call("s", "calls").as_int() == 1);  // its own instance
  BOOST_TEST(c2->call("s", "alive").as_int() == 2);
  c2->close();  // goodbye ends the session: its instance is closed
  // The close is processed by the daemon after the goodbye; bounded poll on the count.
  std::int64_t alive = 2;
  for (int i = 0; i < 10000 && alive != 1; ++i) alive = c1->call("s", "alive").as_int();
  BOOST_TEST(alive == 1);
  BOOST_TEST(c1->call("s", "created").as_int() == 2);
}

BOOST_AUTO_TEST_CASE(percall_instances_live_for_one_call) {
  test_daemon d(R"({"p": {"driver": "test_echo", "mode": "percall"}})");
  auto c = d.connect();
  BOOST_TEST(c->call("p", "created").as_int() == 1);  // nothing opened at start but this call's own
  // ... each call makes its own instance, alone while it runs, closed after
  BOOST_TEST(c->call("p", "alive").as_int() == 1);
  BOOST_TEST(c->call("p", "calls").as_int() == 1);
  BOOST_TEST(c->call("p", "calls").as_int() == 1);
  BOOST_TEST(c->call("p", "created").as_int() == 5);
}
