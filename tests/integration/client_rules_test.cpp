// The C++ client's rules (docs/clients.md), one test each, against a fake daemon that breaks
// on cue, or a real one where it can show the rule (tests/python/test_client_rules.py is the
// same list for the Python client).
#define BOOST_TEST_MODULE client_rules
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <future>
#include <thread>

#include "fake_daemon.h"
#include "protocol/messages.h"
#include "test_daemon.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;
using protocol::message_type;
using then = fake_reply::then;

namespace {

std::shared_ptr<client> connect_to(const fake_daemon& d, client_options options = {}) {
  options.client_name = "rules@test";
  options.heartbeats = false;  // the tests decide every frame that goes out
  options.use_environment = false;
  if (options.timeout == 0ms) options.timeout = 30s;  // a safety net, never reached
  return client::connect("127.0.0.1", d.port(), options);
}

// Answers every call with its method's name.
fake_reply echo_method(const fake_request& r) {
  return {result_frame(r.header.request_id, r.payload.find("method") ? *r.payload.find("method") : value())};
}

std::vector<fake_request> calls_on(const fake_daemon& d, int connection) {
  std::vector<fake_request> out;
  for (auto& r : d.requests())
    if (r.connection == connection && r.header.type == message_type::call) out.push_back(r);
  return out;
}

/// Pings the fake daemon has received so far.
int pings_received(const fake_daemon& d) {
  int n = 0;
  for (const auto& r : d.requests()) n += r.header.type == message_type::ping;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rule_1_a_deadline_inside_a_reply_frame_times_out_and_drops_the_link) {
  fake_daemon d([](const fake_request& r) -> fake_reply {
    if (r.connection == 1) {
      // A header announcing 100 bytes, and only 10 of them.
      auto frame = result_frame(r.header.request_id, std::string(90, 'x'));
      frame.resize(protocol::header_size + 10);
      return {frame};
    }
    return echo_method(r);
  });
  client_options o;
  o.timeout = 300ms;
  auto c = connect_to(d, o);
  BOOST_TEST(error_of([&] { c->call("laser", "cut_short"); }).name() == "timeout");
  // The rest of that frame would be read as the next header: the link is dropped, and the
  // next call goes out on a new connection, resuming the session.
  BOOST_TEST(c->call("laser", "whole").as_string() == "whole");
  BOOST_TEST(d.connections() == 2);
  BOOST_TEST(calls_on(d, 2).size() == 1u);
  BOOST_TEST(d.hellos().at(1).payload.find("session_token")->as_string() == c->session_token());
}

BOOST_AUTO_TEST_CASE(rule_2_a_lock_waits_for_the_daemons_answer_beyond_the_reply_timeout) {
  test_daemon daemon(R"({"laser": {"driver": "sim_laser"}})", R"("lockable": true, "lease_s": 10.0)");
  client_options holder_options;
  holder_options.client_name = "holder@test";
  auto holder = daemon.connect(holder_options);
  holder->lock("laser");

  client_options o;
  o.client_name = "waiter@test";
  o.timeout = 200ms;
  auto waiter = daemon.connect(o);
  const auto asked = std::chrono::steady_clock::now();
  auto granted = std::async(std::launch::async, [&] { return waiter->lock("laser", 20s); });
  // The holder lets go only once the waiter's reply timeout is well past: a client that gave
  // up after `timeout` would have failed by then, and the daemon grants the lock anyway.
  std::this_thread::sleep_until(asked + 3 * o.timeout);
  holder->unlock("laser");
  auto lock = granted.get();
  BOOST_TEST(lock.yours);
  BOOST_TEST(lock.holder_name == "waiter@test");

  // And when `wait` runs out, the answer is the daemon's: locked, not timeout.
  auto other = daemon.connect(o);
  BOOST_TEST(error_of([&] { other->lock("laser", 400ms); }).name() == "locked");
}

BOOST_AUTO_TEST_CASE(rule_3_a_refusal_on_reconnecting_is_not_repeated_by_itself) {
  fake_daemon d(
      [](const fake_request& r) -> fake_reply {
        if (r.header.type == message_type::call) return {{}, then::close};  // the first call breaks the link
        return echo_method(r);
      },
      [](const fake_request& hello) -> std::optional<fake_reply> {
        if (hello.connection == 1) return std::nullopt;
        return fake_reply{error_frame(hello.header.request_id, errc::unsupported_version, "protocol 1 is not served"),
                          then::close};
      });
  auto c = connect_to(d);
  BOOST_TEST(error_of([&] { c->call("laser", "breaks"); }).name() == "connection_lost");
  // The next request reconnects, and is refused.
  BOOST_TEST(error_of([&] { c->call("laser", "again"); }).name() == "unsupported_version");
  BOOST_TEST(d.connections() == 2);
  // A new connection would only be refused again: no more tries by themselves...
  BOOST_TEST(error_of([&] { c->call("laser", "and_again"); }).name() == "unsupported_version");
  BOOST_TEST(d.connections() == 2);
  // ...but resume() tries when asked.
  BOOST_TEST(error_of([&] { c->resume(); }).name() == "unsupported_version");
  BOOST_TEST(d.connections() == 3);
}

BOOST_AUTO_TEST_CASE(rule_3_after_close_nothing_reconnects) {
  fake_daemon d(echo_method);
  auto c = connect_to(d);
  BOOST_TEST(c->call("laser", "one").as_string() == "one");
  c->close();
  BOOST_TEST(error_of([&] { c->call("laser", "two"); }).name() == "connection_lost");
  BOOST_TEST(error_of([&] { c->resume(); }).name() == "connection_lost");
  BOOST_TEST(d.connections() == 1);
}

BOOST_AUTO_TEST_CASE(rule_4_a_request_that_broke_while_in_flight_is_not_sent_again) {
  fake_daemon d([](const fake_request& r) -> fake_reply {
    if (r.connection == 1) return {{}, then::reset};  // it arrived, and may have run
    return echo_method(r);
  });
  auto c = connect_to(d);
  BOOST_TEST(error_of([&] { c->call("laser", "fire"); }).name() == "connection_lost");
  BOOST_TEST(c->call("laser", "next").as_string() == "next");
  auto fired = 0;
  for (auto& r : d.requests())
    if (r.header.type == message_type::call && r.payload.find("method")->as_string() == "fire") ++fired;
  BOOST_TEST(fired == 1);
}

BOOST_AUTO_TEST_CASE(rule_5_a_request_on_an_idle_link_the_daemon_closed_goes_on_a_new_connection) {
  fake_daemon d([](const fake_request& r) -> fake_reply {
    if (r.connection == 1) return {echo_method(r).bytes, then::close};  // as a restarting daemon does
    return echo_method(r);
  });
  auto c = connect_to(d);
  BOOST_TEST(c->call("laser", "one").as_string() == "one");
  d.wait_until([&] { return d.closed(1); });
  // Idle means nothing sent for 5 ms (rule 5); past that, the client looks before it sends.
  std::this_thread::sleep_for(20ms);
  BOOST_TEST(c->call("laser", "two").as_string() == "two");
  BOOST_TEST(d.connections() == 2);
  BOOST_TEST(calls_on(d, 2).size() == 1u);
}

BOOST_AUTO_TEST_CASE(rule_6_heartbeats_keep_an_idle_session_alive) {
  fake_daemon d(
      [](const fake_request& r) -> fake_reply {
        if (r.header.type == message_type::ping)
          return {protocol::encode_frame(message_type::pong, r.header.request_id, nullptr)};
        return echo_method(r);
      },
      {}, 300);
  client_options o;
  o.client_name = "beating@test";
  o.use_environment = false;
  auto c = client::connect("127.0.0.1", d.port(), o);
  d.wait_until([&] { return pings_received(d) >= 3; });
  BOOST_TEST(d.connections() == 1);
  c->close();
}

BOOST_AUTO_TEST_CASE(rule_6_a_daemon_that_only_takes_long_is_not_taken_for_gone) {
  // The daemon does not answer pings for three leases (a long call in a multiplexed daemon);
  // its kernel acknowledges them, so the client keeps its link and gets its answer.
  std::atomic<bool> answer{false};
  fake_daemon d(
      [&](const fake_request& r) -> fake_reply {
        if (r.header.type == message_type::ping && !answer) return {};  // busy
        if (r.header.type == message_type::ping)
          return {protocol::encode_frame(message_type::pong, r.header.request_id, nullptr)};
        return echo_method(r);
      },
      {}, 300);
  client_options o;
  o.client_name = "patient@test";
  o.use_environment = false;
  auto c = client::connect("127.0.0.1", d.port(), o);
  d.wait_until([&] { return pings_received(d) >= 1; });
  // Nothing must happen for longer than the kernel waits for acknowledgements (a lease, at
  // least 1 s): an absence, which only time can show.
  std::this_thread::sleep_for(2500ms);
  answer = true;
  BOOST_TEST(c->call("laser", "after").as_string() == "after");
  BOOST_TEST(d.connections() == 1);
  c->close();
}

BOOST_AUTO_TEST_CASE(rule_7_lock_status_of_one_service_expects_exactly_one_report) {
  fake_daemon d([](const fake_request& r) -> fake_reply {
    protocol::lock_report report;
    report.service = "laser";
    list reports;
    // "laser": two reports; "stage": none; "" (every service): two.
    auto asked = r.payload.find("service") ? r.payload.find("service")->as_string() : std::string();
    if (asked != "stage") reports = {protocol::to_value(report), protocol::to_value(report)};
    return {result_frame(r.header.request_id, reports)};
  });
  auto c = connect_to(d);
  BOOST_TEST(error_of([&] { c->lock_status("laser"); }).name() == "bad_message");
  BOOST_TEST(error_of([&] { c->lock_status("stage"); }).name() == "bad_message");
  BOOST_TEST(c->lock_status().size() == 2u);
}

BOOST_AUTO_TEST_CASE(rule_9_a_connection_level_error_fails_every_waiting_request_then_reconnects) {
  fake_daemon d([](const fake_request& r) -> fake_reply {
    if (r.connection != 1) return echo_method(r);
    if (r.payload.find("method")->as_string() == "first") return {};  // left waiting
    return {error_frame(0, errc::busy, "too many connections"), then::close};
  });
  auto c = connect_to(d);
  auto first = std::async(std::launch::async, [&] { return error_of([&] { c->call("laser", "first"); }); });
  d.wait_until([&] { return calls_on(d, 1).size() == 1; });
  BOOST_TEST(error_of([&] { c->call("laser", "second"); }).name() == "busy");
  BOOST_TEST(first.get().name() == "busy");
  BOOST_TEST(c->call("laser", "third").as_string() == "third");
  BOOST_TEST(d.connections() == 2);
}
