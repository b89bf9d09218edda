// Frame headers and message payloads.
#define BOOST_TEST_MODULE frame
#include <boost/test/unit_test.hpp>

#include "protocol/frame.h"
#include "protocol/messages.h"

using namespace labhost;
using namespace labhost::protocol;

namespace {
std::span<const std::uint8_t, header_size> head(const std::vector<std::uint8_t>& frame) {
  return std::span<const std::uint8_t, header_size>(frame.data(), header_size);
}
}  // namespace

BOOST_AUTO_TEST_CASE(header_round_trips) {
  auto frame = encode_frame(message_type::call, 0xA1B2C3D4, value(list{1, 2}));
  auto h = parse_header(head(frame), limits::default_max_frame_bytes);
  BOOST_TEST_REQUIRE(h.ok());
  BOOST_TEST((h->type == message_type::call));
  BOOST_TEST(h->request_id == 0xA1B2C3D4u);
  BOOST_TEST(h->payload_size == frame.size() - header_size);
  BOOST_TEST(frame[0] == 'L');
  BOOST_TEST(frame[4] == framing_version);
  BOOST_TEST(frame[5] == 3);
}

BOOST_AUTO_TEST_CASE(wrong_magic_is_bad_frame) {
  auto frame = encode_frame(message_type::ping, 1, nullptr);
  frame[0] = 'X';
  auto h = parse_header(head(frame), limits::default_max_frame_bytes);
  BOOST_TEST_REQUIRE(!h.ok());
  BOOST_TEST((h.err().code == errc::bad_frame));
}

BOOST_AUTO_TEST_CASE(other_version_is_unsupported_version) {
  auto frame = encode_frame(message_type::ping, 1, nullptr);
  frame[4] = 2;
  auto h = parse_header(head(frame), limits::default_max_frame_bytes);
  BOOST_TEST_REQUIRE(!h.ok());
  BOOST_TEST((h.err().code == errc::unsupported_version));
}

BOOST_AUTO_TEST_CASE(unknown_message_type_is_bad_frame) {
  auto frame = encode_frame(message_type::ping, 1, nullptr);
  frame[5] = 200;
  BOOST_TEST((parse_header(head(frame), limits::default_max_frame_bytes).err().code == errc::bad_frame));
}

BOOST_AUTO_TEST_CASE(length_is_checked_against_the_maximum) {
  std::vector<std::uint8_t> payload(1000);
  auto frame = make_frame(message_type::call, 1, payload);
  BOOST_TEST(parse_header(head(frame), 1000).ok());  // exactly the limit
  auto over = parse_header(head(frame), 999);
  BOOST_TEST_REQUIRE(!over.ok());
  BOOST_TEST((over.err().code == errc::bad_frame));
  BOOST_TEST(over.err().message.find("exceeds the maximum") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(messages_round_trip) {
  hello_message hello{"ana@lab", 1234, 1, 1, "tok", {}};
  auto h = parse_hello(to_value(hello));
  BOOST_TEST_REQUIRE(h.ok());
  BOOST_TEST(h->client_name == "ana@lab");
  BOOST_TEST(h->pid == 1234);
  BOOST_TEST(h->session_token == "tok");

  call_message call{"laser", "set_wavelength", list{1550.5}, map{{"fast", true}}};
  auto c = parse_call(to_value(call));
  BOOST_TEST_REQUIRE(c.ok());
  BOOST_TEST(c->service == "laser");
  BOOST_TEST((c->args == call.args));
  BOOST_TEST((c->kwargs == call.kwargs));

  error e{errc::locked, "held by ana"};
  auto back = parse_error(to_value(e));
  BOOST_TEST((back.code == errc::locked));
  BOOST_TEST(back.message == "held by ana");
  BOOST_TEST(back.name() == "locked");
}

BOOST_AUTO_TEST_CASE(malformed_messages_are_bad_message_not_exceptions) {
  BOOST_TEST((parse_call(value(42)).err().code == errc::bad_message));
  BOOST_TEST((parse_call(value(map{{"service", 1}, {"method", "x"}})).err().code == errc::bad_message));
  BOOST_TEST((parse_call(value(map{{"service", "a"}, {"method", "x"}, {"args", "no"}})).err().code ==
              errc::bad_message));
  BOOST_TEST((parse_hello(value(map{})).err().code == errc::bad_message));
  BOOST_TEST(parse_hello(value(map{})).err().message == "hello.client_name: expected a value");
  auto describe = parse_daemon_description(value(map{{"daemon", "x"}, {"services", 5}}));
  BOOST_TEST((describe.err().code == errc::bad_message));
}

BOOST_AUTO_TEST_CASE(error_names_are_stable) {
  BOOST_TEST(errc_name(errc::bad_frame) == "bad_frame");
  BOOST_TEST(errc_name(errc::no_such_service) == "no_such_service");
  BOOST_TEST(errc_name(errc::service_unavailable) == "service_unavailable");
  BOOST_TEST(static_cast<int>(errc::driver_error) == 6);
  BOOST_TEST(static_cast<int>(errc::shutting_down) == 10);
}
