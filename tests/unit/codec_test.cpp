// The value codec: every type round-trips, and malformed input gives an error value.
#define BOOST_TEST_MODULE codec
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <limits>

#include "labhost/value_codec.h"

using namespace labhost;

namespace {

value round_trip(const value& v) {
  auto encoded = encode(v);
  auto decoded = decode(encoded);
  BOOST_TEST_REQUIRE(decoded.ok(), decoded.message());
  return decoded.decoded;
}

std::vector<std::uint8_t> u32(std::uint32_t v) {
  std::vector<std::uint8_t> b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

std::vector<std::uint8_t> concat(std::initializer_list<std::vector<std::uint8_t>> parts) {
  std::vector<std::uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(scalars_round_trip) {
  for (const value& v : {value(), value(true), value(false), value(std::int64_t{0}),
                         value(std::numeric_limits<std::int64_t>::min()),
                         value(std::numeric_limits<std::int64_t>::max()), value(1550.5), value(-0.0),
                         value(std::numeric_limits<double>::infinity()), value(1e-300)}) {
    BOOST_TEST((round_trip(v) == v));
  }
  BOOST_TEST(std::isnan(round_trip(std::nan("")).as_float()));
}

BOOST_AUTO_TEST_CASE(strings_and_bytes_round_trip) {
  BOOST_TEST(round_trip("").as_string() == "");
  BOOST_TEST(round_trip("λ = 1550 nm ✓").as_string() == "λ = 1550 nm ✓");
  bytes raw{{0, 1, 2, 255, 0}};
  BOOST_TEST((round_trip(raw).as_bytes() == raw));
  BOOST_TEST(round_trip(raw).is_bytes());  // bytes never turn into strings
}

BOOST_AUTO_TEST_CASE(lists_and_maps_round_trip_in_order) {
  value nested = map{{"z", 1}, {"a", list{1, "two", 3.0, list{}, map{}}}, {"m", map{{"k", nullptr}}}};
  value back = round_trip(nested);
  BOOST_TEST((back == nested));
  BOOST_TEST(back.as_map()[0].first == "z");  // key order kept
}

BOOST_AUTO_TEST_CASE(typed_arrays_round_trip_for_every_element_type) {
  BOOST_TEST((round_trip(typed_array::from(std::vector<double>{1.5, -2.25})) ==
              value(typed_array::from(std::vector<double>{1.5, -2.25}))));
  BOOST_TEST((round_trip(typed_array::from(std::vector<float>{1.5f})).as_array().at<float>(0) == 1.5f));
  BOOST_TEST((round_trip(typed_array::from(std::vector<std::int32_t>{-7, 7})).as_array().at<std::int32_t>(0) == -7));
  BOOST_TEST((round_trip(typed_array::from(std::vector<std::uint16_t>{65535})).as_array().at<std::uint16_t>(0) == 65535));
  BOOST_TEST((round_trip(typed_array::from(std::vector<std::uint8_t>{9})).as_array().type == element_type::uint8));
  BOOST_TEST((round_trip(typed_array::from(std::vector<std::int64_t>{})).as_array().count() == 0u));
  for (auto type : {element_type::int8, element_type::int16, element_type::uint32, element_type::uint64}) {
    typed_array a;
    a.type = type;
    a.data.assign(element_size(type) * 3, 0xAB);
    BOOST_TEST((round_trip(a) == value(a)));
  }
}

BOOST_AUTO_TEST_CASE(array_encoding_is_tag_type_count_then_raw_little_endian_data) {
  auto encoded = encode(typed_array::from(std::vector<std::uint16_t>{1, 0x0203}));
  std::vector<std::uint8_t> expected{8, 9, 2, 0, 0, 0, 1, 0, 3, 2};
  BOOST_TEST(encoded == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_valid_value_is_an_error) {
  value v = map{{"args", list{1550.5, "x", bytes{{1, 2}}, typed_array::from(std::vector<std::int32_t>{1, 2})}}};
  auto encoded = encode(v);
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    auto r = decode(std::span(encoded.data(), n));
    BOOST_TEST(!r.ok(), "prefix of " << n << " bytes decoded");
    BOOST_TEST(r.decoded.is_null());
  }
}

BOOST_AUTO_TEST_CASE(bad_tags_bools_and_element_types_are_errors) {
  BOOST_TEST((decode(std::vector<std::uint8_t>{42}).status == decode_status::bad_tag));
  BOOST_TEST((decode(std::vector<std::uint8_t>{1, 2}).status == decode_status::bad_bool));
  BOOST_TEST((decode(concat({{8, 99}, u32(0)})).status == decode_status::bad_element_type));
  BOOST_TEST((decode(std::vector<std::uint8_t>{0, 0}).status == decode_status::trailing_bytes));
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_an_error) {
  for (auto bad : std::vector<std::vector<std::uint8_t>>{{0xFF}, {0xC0, 0x80}, {0xED, 0xA0, 0x80}, {0xE2, 0x82}}) {
    auto encoded = concat({{4}, u32(static_cast<std::uint32_t>(bad.size())), bad});
    BOOST_TEST((decode(encoded).status == decode_status::bad_utf8));
  }
}

BOOST_AUTO_TEST_CASE(huge_counts_are_refused_before_any_allocation) {
  // Each claims billions of entries/bytes but carries none: refused as truncated at once.
  BOOST_TEST((decode(concat({{6}, u32(0xFFFFFFFF)})).status == decode_status::truncated));
  BOOST_TEST((decode(concat({{7}, u32(0xFFFFFFFF)})).status == decode_status::truncated));
  BOOST_TEST((decode(concat({{5}, u32(0xFFFFFFFF)})).status == decode_status::truncated));
  BOOST_TEST((decode(concat({{8, 1}, u32(0xFFFFFFFF)})).status == decode_status::truncated));
}

BOOST_AUTO_TEST_CASE(nesting_deeper_than_the_limit_is_refused) {
  std::vector<std::uint8_t> deep;
  for (int i = 0; i < 10'000; ++i) {
    auto level = concat({{6}, u32(1)});
    deep.insert(deep.end(), level.begin(), level.end());
  }
  deep.push_back(0);
  auto r = decode(deep);
  BOOST_TEST((r.status == decode_status::too_deep));

  decode_limits limits;
  limits.max_depth = 3;
  value ok = list{list{list{}}};
  value too_deep = list{list{list{list{}}}};
  BOOST_TEST(decode(encode(ok), limits).ok());
  BOOST_TEST((decode(encode(too_deep), limits).status == decode_status::too_deep));
}

BOOST_AUTO_TEST_CASE(element_count_limit_is_enforced) {
  decode_limits limits;
  limits.max_items = 10;
  list many(11, value(1));
  BOOST_TEST((decode(encode(many), limits).status == decode_status::too_many_items));
  list few(10, value(1));
  BOOST_TEST(decode(encode(few), limits).ok());
}

BOOST_AUTO_TEST_CASE(error_offset_points_at_the_problem) {
  auto encoded = concat({{6}, u32(2), {0, 42}});
  auto r = decode(encoded);
  BOOST_TEST((r.status == decode_status::bad_tag));
  BOOST_TEST(r.error_offset == 6u);
  BOOST_TEST(r.message() == "unknown value tag at byte 6");
}
