// Protocol version 2 through a real daemon and real plugins: shaped arrays and the new
// element types both ways, events and streams (subscribe, delivery, slow and dead
// subscribers, resume), oneway calls, asynchronous calls, and what version-1 peers (old
// clients, old drivers) get instead.
#define BOOST_TEST_MODULE events
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <atomic>
#include <complex>
#include <set>
#include <future>
#include <thread>

#include "protocol/messages.h"
#include "raw_client.h"
#include "test_daemon.h"
#include "test_process.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;
using protocol::message_type;

namespace {

const std::string echo_services = R"({"echo": {"driver": "test_echo"}, "echo2": {"driver": "test_echo"}})";

/// Subscribers of a topic of test_echo service `service`, as the driver sees them.
std::int64_t subscribers(client& c, const std::string& service, const std::string& topic) {
  return c.call(service, "demand", {topic}).as_array().at<std::int64_t>(0);
}

/// Waits for the next event of `s`, failing the test after a generous safety net.
event next_event(subscription& s) {
  auto e = s.next(30s);
  BOOST_TEST_REQUIRE(e.has_value(), "no event within 30 s");
  return std::move(*e);
}

/// A subscription's events as a raw client sees them, and the subscribe reply.
std::uint32_t raw_subscribe(raw_client& c, const std::string& service, const std::string& topic, std::int64_t queue = 16) {
  protocol::subscribe_message m{service, topic, queue, 0};
  c.send(protocol::encode_frame(message_type::subscribe, 77, protocol::to_value(m)));
  auto reply = c.receive();
  BOOST_TEST_REQUIRE(reply.has_value());
  BOOST_TEST_REQUIRE((reply->first.type == message_type::result));
  return static_cast<std::uint32_t>(reply->second.find("subscription")->as_int());
}

}  // namespace

// --- Shapes and element types.

BOOST_AUTO_TEST_CASE(a_shaped_result_keeps_its_shape_and_every_pixel) {
  test_daemon d(echo_services);
  auto c = d.connect();
  BOOST_TEST(c->protocol_version() == 2);
  value frame = c->call("echo", "frame", {480, 640});
  const auto& a = frame.as_array();
  BOOST_TEST((a.type == element_type::uint16));
  BOOST_TEST((a.shape == std::vector<std::uint32_t>{480, 640}));
  BOOST_TEST_REQUIRE(a.count() == 480u * 640u);
  for (std::size_t i = 0; i < a.count(); ++i)
    BOOST_TEST_REQUIRE(a.at<std::uint16_t>(i) == static_cast<std::uint16_t>(i));
}

BOOST_AUTO_TEST_CASE(a_shaped_argument_reaches_the_driver_with_its_shape) {
  test_daemon d(echo_services);
  auto c = d.connect();
  std::vector<float> cube(2 * 3 * 4, 1.5f);
  value described = c->call("echo", "shape_of", {typed_array::from(cube).reshaped({2, 3, 4})});
  BOOST_TEST(described.find("dtype")->as_string() == "float32");
  BOOST_TEST(described.find("count")->as_int() == 24);
  const auto& shape = described.find("shape")->as_list();
  BOOST_TEST_REQUIRE(shape.size() == 3u);
  BOOST_TEST(shape[0].as_int() == 2);
  BOOST_TEST(shape[2].as_int() == 4);
  // A flat array stays flat.
  BOOST_TEST(c->call("echo", "shape_of", {typed_array::from(cube)}).find("shape")->as_list().empty());
}

BOOST_AUTO_TEST_CASE(every_element_type_travels_both_ways) {
  test_daemon d(echo_services);
  auto c = d.connect();
  std::vector<typed_array> arrays;
  const double f64[] = {0.5, -1.0};
  arrays.push_back(typed_array::from(f64, 2));
  const float f32[] = {0.5f, -1.0f};
  arrays.push_back(typed_array::from(f32, 2));
  const std::int64_t i64[] = {INT64_MIN, 2};
  arrays.push_back(typed_array::from(i64, 2));
  const std::int32_t i32[] = {-3, 4};
  arrays.push_back(typed_array::from(i32, 2));
  const std::int16_t i16[] = {-5, 6};
  arrays.push_back(typed_array::from(i16, 2));
  const std::int8_t i8[] = {-7, 8};
  arrays.push_back(typed_array::from(i8, 2));
  const std::uint64_t u64[] = {UINT64_MAX, 1};
  arrays.push_back(typed_array::from(u64, 2));
  const std::uint32_t u32[] = {9, 10};
  arrays.push_back(typed_array::from(u32, 2));
  const std::uint16_t u16[] = {11, 12};
  arrays.push_back(typed_array::from(u16, 2));
  const std::uint8_t u8[] = {13, 14};
  arrays.push_back(typed_array::from(u8, 2));
  const std::complex<float> c64[] = {{1, -2}, {0.5f, 0}};
  arrays.push_back(typed_array::from(c64, 2));
  const std::complex<double> c128[] = {{1.5, -0.25}, {0, 1}};
  arrays.push_back(typed_array::from(c128, 2));
  const bool flags[] = {true, false};
  arrays.push_back(typed_array::from(flags, 2));
  std::set<element_type> seen;
  for (auto& a : arrays) {
    seen.insert(a.type);
    BOOST_TEST((c->call("echo", "echo", {a}).as_array() == a), element_type_name(a.type));
    auto shaped = typed_array(a).reshaped({1, 2});
    BOOST_TEST((c->call("echo", "echo", {shaped}).as_array() == shaped), element_type_name(a.type));
  }
  BOOST_TEST(seen.size() == 13u);  // every element type of the protocol
  // The SDK converts them for a driver's typed parameters.
  auto conjugated = c->call("echo", "conjugate", {typed_array::from(c128, 2)}).as_array();
  BOOST_TEST((conjugated.at<std::complex<double>>(0) == std::complex<double>(1.5, 0.25)));
  auto negated = c->call("echo", "negate", {typed_array::from(flags, 2)}).as_array();
  BOOST_TEST((negated.data == std::vector<std::uint8_t>{0, 1}));
}

BOOST_AUTO_TEST_CASE(a_version_1_client_gets_shaped_arrays_flat_and_a_clear_error_for_new_types) {
  test_daemon d(echo_services);
  raw_client old(d.port());
  old.hello("old@test", 1);
  // A shaped frame, written in place: flat, every element there.
  old.send(protocol::encode_frame(message_type::call, 5,
                                  protocol::to_value(protocol::call_message{"echo", "frame", {3, 4}, {}})));
  auto frame = old.receive();
  BOOST_TEST_REQUIRE(frame.has_value());
  BOOST_TEST_REQUIRE((frame->first.type == message_type::result));
  BOOST_TEST(frame->first.request_id == 5u);
  BOOST_TEST(frame->second.as_array().shape.empty());
  BOOST_TEST(frame->second.as_array().count() == 12u);
  BOOST_TEST(frame->second.as_array().at<std::uint16_t>(11) == 11);
  // Nested in a list: flat too.
  std::vector<std::uint8_t> bytes6{1, 2, 3, 4, 5, 6};
  value nested = list{typed_array::from(bytes6).reshaped({2, 3}), 1};
  old.send(protocol::encode_frame(message_type::call, 6,
                                  protocol::to_value(protocol::call_message{"echo", "echo", {nested}, {}})));
  auto echoed = old.receive();
  BOOST_TEST_REQUIRE(echoed.has_value());
  BOOST_TEST(echoed->first.request_id == 6u);  // re-encoded, under its request's id
  BOOST_TEST(echoed->second.as_list().at(0).as_array().shape.empty());
  BOOST_TEST(echoed->second.as_list().at(0).as_array().data == bytes6);
  // Complex numbers cannot be said in version 1: a typed error, and the connection serves on.
  const std::complex<double> z[] = {{1, 2}};
  old.send(protocol::encode_frame(message_type::call, 7,
                                  protocol::to_value(protocol::call_message{"echo", "echo", {typed_array::from(z, 1)}, {}})));
  auto refused = old.receive();
  BOOST_TEST_REQUIRE(refused.has_value());
  BOOST_TEST((refused->first.type == message_type::error));
  auto e = protocol::parse_error(refused->second);
  BOOST_TEST((e.code == errc::unsupported_version));
  BOOST_TEST(e.message.find("complex128") != std::string::npos, e.message);
  // No events for version 1.
  protocol::subscribe_message m{"echo", "numbers", 16, 0};
  old.send(protocol::encode_frame(message_type::subscribe, 8, protocol::to_value(m)));
  auto no_events = old.receive();
  BOOST_TEST_REQUIRE(no_events.has_value());
  BOOST_TEST((protocol::parse_error(no_events->second).code == errc::bad_message));
  old.send(protocol::encode_frame(message_type::call, 9,
                                  protocol::to_value(protocol::call_message{"echo", "add", {1, 2}, {}})));
  BOOST_TEST(old.receive()->second.as_int() == 3);
}

BOOST_AUTO_TEST_CASE(a_driver_built_for_an_older_abi_gets_arguments_it_can_read) {
  test_daemon d(R"({"old": {"driver": "test_abi_older_minor"}})");
  auto c = d.connect();
  std::vector<std::uint16_t> pixels{1, 2, 3, 4, 5, 6};
  // The driver echoes the bytes it was given: a flat array.
  auto echoed = c->call("old", "echo", {typed_array::from(pixels).reshaped({2, 3})}).as_array();
  BOOST_TEST(echoed.shape.empty());
  BOOST_TEST((echoed == typed_array::from(pixels)));
  const bool flags[] = {true};
  auto e = error_of([&] { c->call("old", "echo", {typed_array::from(flags, 1)}); });
  BOOST_TEST((e.code == errc::bad_arguments));
  BOOST_TEST(e.message.find("ABI 1.0") != std::string::npos, e.message);
}

// --- Oneway and asynchronous calls.

BOOST_AUTO_TEST_CASE(oneway_calls_run_in_order_and_need_no_reply) {
  test_daemon d(echo_services);
  auto c = d.connect();
  BOOST_TEST(c->describe("echo").methods.size() > 0u);
  bool marked = false;
  for (const auto& m : c->describe("echo").methods)
    if (m.name == "record") marked = m.oneway;
  BOOST_TEST(marked);
  for (int i = 0; i < 500; ++i) c->call_oneway("echo", "record", {i});
  // An ordinary call queues behind them on the service: when it returns, all have run.
  auto recorded = c->call("echo", "recorded").as_list();
  BOOST_TEST_REQUIRE(recorded.size() == 500u);
  for (int i = 0; i < 500; ++i) BOOST_TEST_REQUIRE(recorded[i].as_int() == i);
  BOOST_TEST(c->oneway_failures() == 0u);
}

BOOST_AUTO_TEST_CASE(a_failed_oneway_call_is_reported) {
  test_daemon d(echo_services);
  std::promise<error> reported;
  client_options o;
  o.on_oneway_error = [&](const error& e) { reported.set_value(e); };
  auto c = d.connect(o);
  c->call_oneway("echo", "fail", {"the shutter jammed"});
  // Someone must read for the report to arrive: an ordinary call does.
  BOOST_TEST(c->call("echo", "add", {1, 1}).as_int() == 2);
  auto f = reported.get_future();
  BOOST_TEST_REQUIRE((f.wait_for(30s) == std::future_status::ready));
  auto e = f.get();
  BOOST_TEST((e.code == errc::driver_error));
  BOOST_TEST(e.message.find("the shutter jammed") != std::string::npos);
  BOOST_TEST(c->oneway_failures() == 1u);
}

BOOST_AUTO_TEST_CASE(a_hundred_asynchronous_calls_in_flight_at_once) {
  test_daemon d(echo_services);
  auto c = d.connect();
  // The first holds a gate: the others are all sent before any of them can be answered.
  auto gated = c->call_async("echo", "wait_gate", {"async"});
  std::vector<std::future<value>> sums;
  for (int i = 0; i < 100; ++i) sums.push_back(c->call_async("echo2", "add", {i, 1000}));
  for (int i = 0; i < 100; ++i) BOOST_TEST_REQUIRE(sums[i].get().as_int() == i + 1000);
  c->call("echo2", "open_gate", {"async"});
  BOOST_TEST(gated.get().as_int() == 1);
  // A callback, and an error through a future.
  std::promise<std::int64_t> done;
  c->call_async("echo", "add", {2, 3}, {}, [&](result<value> r) { done.set_value(r ? r->as_int() : -1); });
  BOOST_TEST(done.get_future().get() == 5);
  auto failing = c->call_async("echo", "fail", {"no light"});
  BOOST_TEST((error_of([&] { failing.get(); }).code == errc::driver_error));
}

// --- Events.

BOOST_AUTO_TEST_CASE(a_subscriber_gets_every_event_in_order) {
  test_daemon d(echo_services);
  auto c = d.connect();
  auto numbers = c->subscribe("echo", "numbers", {100, 0});
  BOOST_TEST(numbers->type() == "int64");
  BOOST_TEST(c->call("echo", "emit", {50}).as_int() == 50);
  for (int i = 1; i <= 50; ++i) {
    auto e = next_event(*numbers);
    BOOST_TEST_REQUIRE(e.data.as_int() == i);
    BOOST_TEST_REQUIRE(e.seq == i);
    BOOST_TEST(e.dropped == 0);
    BOOST_TEST(e.time > 1.7e9);
  }
  numbers->unsubscribe();
  BOOST_TEST((subscribers(*c, "echo", "numbers") == 0));
  c->call("echo", "emit", {5});
  BOOST_TEST((error_of([&] { numbers->next(0ms); }).code == errc::connection_lost));  // ended, nothing after
}

BOOST_AUTO_TEST_CASE(frames_stream_shaped_and_pixel_checked_to_several_subscribers) {
  test_daemon d(echo_services);
  auto a = d.connect();
  auto b = d.connect();
  auto fa = a->subscribe("echo", "frames", {8, 0});
  auto fb = b->subscribe("echo", "frames", {8, 0});
  BOOST_TEST(a->call("echo", "emit_frames", {3, 64, 48}).as_int() == 3);
  for (auto* s : {fa.get(), fb.get()}) {
    for (int n = 1; n <= 3; ++n) {
      auto e = next_event(*s);
      const auto& frame = e.data.as_array();
      BOOST_TEST_REQUIRE((frame.shape == std::vector<std::uint32_t>{64, 48}));
      for (std::size_t i = 0; i < frame.count(); ++i) BOOST_TEST_REQUIRE(frame.at<std::uint16_t>(i) == n);
    }
  }
}

BOOST_AUTO_TEST_CASE(topics_are_described_and_unknown_ones_refused) {
  test_daemon d(R"({"echo": {"driver": "test_echo"}, "laser": {"driver": "sim_laser"},
                    "each_call": {"driver": "test_echo", "mode": "percall"}})");
  auto c = d.connect();
  auto topics = c->describe("echo").topics;
  BOOST_TEST_REQUIRE(topics.size() == 2u);
  BOOST_TEST(topics[0].name == "numbers");
  BOOST_TEST(topics[1].type == "array<uint16>");
  auto unknown = error_of([&] { c->subscribe("echo", "nope"); });
  BOOST_TEST((unknown.code == errc::no_such_topic));
  BOOST_TEST(unknown.message.find("numbers, frames") != std::string::npos, unknown.message);
  BOOST_TEST((error_of([&] { c->subscribe("laser", "power"); }).code == errc::no_such_topic));
  BOOST_TEST((error_of([&] { c->subscribe("each_call", "numbers"); }).code == errc::no_such_topic));
  BOOST_TEST((error_of([&] { c->subscribe("ghost", "numbers"); }).code == errc::no_such_service));
  auto bad_queue = error_of([&] { c->subscribe("echo", "numbers", {0, 0}); });
  BOOST_TEST((bad_queue.code == errc::bad_message));
  raw_client raw(d.port());
  raw.hello();
  raw.send(protocol::encode_frame(message_type::unsubscribe, 3, protocol::to_value(protocol::unsubscribe_message{99})));
  BOOST_TEST((protocol::parse_error(raw.receive()->second).code == errc::no_such_subscription));
}

BOOST_AUTO_TEST_CASE(a_subscriber_that_stops_reading_costs_the_others_nothing_and_memory_stays_bounded) {
  // 2 MiB frames; each subscription keeps at most 8 MiB of them.
  test_daemon d(echo_services, R"("subscriber_queue_bytes": 8388608, "lease_s": 120)");
  auto fast = d.connect();
  auto events = fast->subscribe("echo", "frames", {4, 0});
  // A watcher process that is stopped (SIGSTOP) while the frames flow: it reads nothing.
  test_process stopped({(bin_dir() / "labctl").string(), "watch", d.address("echo"), "frames", "--queue", "1024"});
  BOOST_TEST_REQUIRE(eventually([&] { return subscribers(*fast, "echo", "frames") == 2; }));
  stopped.signal(SIGSTOP);
  const auto rss_before = resident_kib(d.process().pid());
  constexpr int frames = 120;  // 240 MiB published in all
  std::int64_t dropped = 0;
  for (int i = 0; i < frames; ++i) {
    BOOST_TEST_REQUIRE(fast->call("echo", "emit_frames", {1, 1024, 1024}).as_int() == 1);
    auto e = next_event(*events);  // taken before the next: this subscriber keeps up
    dropped += e.dropped;
    BOOST_TEST_REQUIRE(e.data.as_array().at<std::uint16_t>(0) == static_cast<std::uint16_t>(i + 1));
  }
  BOOST_TEST(dropped == 0);  // the stopped one cost the others nothing
  // It holds its queue and what its socket took, not 240 MiB. (Sanitizers keep freed memory:
  // resident memory says nothing there.)
  if constexpr (!sanitizer_build) {
    const auto rss_after = resident_kib(d.process().pid());
    const auto grown_mib = (rss_after - std::min(rss_before, rss_after)) / 1024;
    BOOST_TEST(grown_mib < 64u, "the daemon grew by " << grown_mib << " MiB");
  }
  // Woken, it is told what it lost, and gets the newest frames.
  stopped.signal(SIGCONT);
  std::int64_t reported_dropped = 0, last_seq = 0;
  while (last_seq < frames) {
    auto line = stopped.read_line();  // "#SEQ TIME VALUE  (N dropped before it)"
    BOOST_TEST_REQUIRE(line.has_value());
    last_seq = std::stoll(line->substr(1));
    if (auto at = line->find("  ("); at != std::string::npos) reported_dropped += std::stoll(line->substr(at + 3));
  }
  BOOST_TEST(reported_dropped > 0);
  BOOST_TEST(reported_dropped < frames);
}

BOOST_AUTO_TEST_CASE(a_subscriber_killed_mid_stream_leaves_the_daemon_serving) {
  test_daemon d(echo_services);
  // A client process (labctl watch) that subscribes and is killed while frames flow to it.
  test_process doomed({(bin_dir() / "labctl").string(), "watch", d.address("echo"), "frames", "--json"});
  auto c = d.connect();
  BOOST_TEST_REQUIRE(eventually([&] { return subscribers(*c, "echo", "frames") == 1; }));
  c->call("echo", "emit_frames", {1, 4, 4});
  auto line = doomed.read_line();  // it gets them: one JSON line per event
  BOOST_TEST_REQUIRE(line.has_value());
  BOOST_TEST(line->find("\"seq\":1") != std::string::npos, *line);
  c->call("echo", "emit_frames", {20, 512, 512});
  doomed.signal(SIGKILL);
  doomed.wait();
  // Its session ends (the connection closed), and with it the subscription.
  BOOST_TEST(eventually([&] { return subscribers(*c, "echo", "frames") == 0; }));
  auto mine = c->subscribe("echo", "frames", {4, 0});
  c->call("echo", "emit_frames", {1, 8, 8});
  BOOST_TEST(next_event(*mine).data.as_array().count() == 64u);
  BOOST_TEST(d.process().running());
}

BOOST_AUTO_TEST_CASE(events_published_while_the_link_is_down_arrive_after_the_resume) {
  test_daemon d(echo_services, R"("lease_s": 30)");
  auto publisher = d.connect();
  raw_client first(d.port());
  const std::string token = first.hello("roaming@test");
  const auto id = raw_subscribe(first, "echo", "numbers", 64);
  first.reset();  // the link breaks; the session waits for its client
  BOOST_TEST(publisher->call("echo", "emit", {5}).as_int() == 5);
  raw_client second(d.port());
  BOOST_TEST(second.hello("roaming@test", protocol::protocol_version, token) == token);
  for (std::int64_t n = 1; n <= 5; ++n) {
    auto e = second.receive();
    BOOST_TEST_REQUIRE(e.has_value());
    BOOST_TEST_REQUIRE((e->first.type == message_type::event));
    BOOST_TEST(e->first.request_id == id);  // the same subscription
    BOOST_TEST(e->second.find("value")->as_int() == n);
  }
}

BOOST_AUTO_TEST_CASE(the_client_keeps_its_subscriptions_across_a_resume) {
  test_daemon d(echo_services, R"("lease_s": 30)");
  auto c = d.connect();
  auto numbers = c->subscribe("echo", "numbers", {64, 0});
  c->call("echo", "emit", {3});
  for (int i = 1; i <= 3; ++i) BOOST_TEST_REQUIRE(next_event(*numbers).data.as_int() == i);
  BOOST_TEST(c->resume());  // drops the link, reconnects, the daemon still has the session
  c->call("echo", "emit", {4});
  for (int i = 4; i <= 7; ++i) {
    auto e = next_event(*numbers);
    BOOST_TEST_REQUIRE(e.data.as_int() == i);
    BOOST_TEST(e.seq == i);
  }
}

BOOST_AUTO_TEST_CASE(a_subscription_ends_with_its_session) {
  test_daemon d(echo_services);
  auto watcher = d.connect();
  {
    auto c = d.connect();
    auto numbers = c->subscribe("echo", "numbers");
    BOOST_TEST(subscribers(*watcher, "echo", "numbers") == 1);
    c->close();
    BOOST_TEST((error_of([&] { numbers->next(5s); }).code == errc::connection_lost));
  }
  BOOST_TEST(eventually([&] { return subscribers(*watcher, "echo", "numbers") == 0; }));
}

BOOST_AUTO_TEST_CASE(the_simulated_instruments_publish) {
  test_daemon d(R"({"camera": {"driver": "sim_camera", "params": {"width": 32, "height": 16, "frame_rate_hz": 200}},
                    "powermeter": {"driver": "sim_powermeter", "params": {"rate_hz": 100}},
                    "stage": {"driver": "sim_stage", "params": {"speed_mm_s": 100}}})");
  auto c = d.connect();
  auto frames = c->subscribe("camera", "frames", {4, 0});
  for (int i = 0; i < 3; ++i) {
    auto e = next_event(*frames);
    const auto& a = e.data.as_array();
    BOOST_TEST_REQUIRE((a.shape == std::vector<std::uint32_t>{16, 32}));
    // pixel (y, x) = x + y + n mod 65536 for the n-th streamed frame, n = seq
    BOOST_TEST_REQUIRE(a.at<std::uint16_t>(5 * 32 + 7) == static_cast<std::uint16_t>(7 + 5 + e.seq));
  }
  auto power = c->subscribe("powermeter", "power");
  BOOST_TEST(next_event(*power).data.is_float());
  auto position = c->subscribe("stage", "position", {64, 0});
  c->call("stage", "move_to", {20.0});
  double last = -1;
  for (auto e = next_event(*position);; e = next_event(*position)) {
    BOOST_TEST_REQUIRE(e.data.as_float() >= last);
    last = e.data.as_float();
    if (last == 20.0) break;
  }
}

BOOST_AUTO_TEST_CASE(max_rate_holds_events_back_and_a_queue_of_one_keeps_the_newest) {
  test_daemon d(echo_services);
  auto c = d.connect();
  // One event a second: after the first is delivered, the next waits a second, by which time
  // the next fifty have been published (microseconds); a queue of one keeps the newest.
  auto numbers = c->subscribe("echo", "numbers", {1, 1.0});
  c->call("echo", "emit", {1});
  auto first = next_event(*numbers);
  BOOST_TEST(first.data.as_int() == 1);
  BOOST_TEST(c->call("echo", "emit", {50}).as_int() == 50);
  auto second = next_event(*numbers);
  BOOST_TEST(second.data.as_int() == 51);
  BOOST_TEST(second.seq == 51);
  BOOST_TEST(second.dropped == 49);
  BOOST_TEST(numbers->dropped() == 49u);
}
