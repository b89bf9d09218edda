// The C++ side of the conformance vectors in tests/vectors (tests/python/test_conformance.py is
// the Python side): the value codec, frame headers, addresses, error codes, secret files and
// limits must be exactly what the files say, so the daemon, the C++ client and the Python
// client cannot drift apart.
#define BOOST_TEST_MODULE conformance
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <complex>

#include <cstring>
#include <limits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "labhost/client.h"
#include "labhost/errors.h"
#include "labhost/limits.h"
#include "labhost/value_codec.h"
#include "protocol/auth.h"
#include "protocol/frame.h"
#include "protocol/secret_file.h"
#include "test_daemon.h"

namespace json = boost::json;
using namespace labhost;

namespace {

json::object read_vectors(const std::string& name) {
  auto file = std::filesystem::path(LABHOST_SOURCE_DIR) / "tests" / "vectors" / name;
  std::ifstream in(file);
  BOOST_TEST_REQUIRE(in.good(), "cannot read " << file);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str()).as_object();
}

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  BOOST_TEST_REQUIRE(hex.size() % 2 == 0);
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < hex.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string to_hex(std::span<const std::uint8_t> in) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (auto b : in) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

double float_of(const json::value& v) {
  if (v.is_string()) {
    const auto& s = v.as_string();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "-0") return -0.0;
    BOOST_FAIL("unknown float spelling " << s);
  }
  return v.to_number<double>();
}

element_type element_type_named(std::string_view name) {
  for (int byte = 1; byte <= 255; ++byte) {
    auto type = static_cast<element_type>(byte);
    if (element_size(type) != 0 && element_type_name(type) == name) return type;
  }
  BOOST_FAIL("unknown element type " << name);
  return element_type::uint8;
}

template <typename T>
void append_element(typed_array& array, const json::value& element) {
  T x;
  if constexpr (std::is_same_v<T, bool>) x = element.as_bool();
  else if constexpr (std::is_same_v<T, std::complex<float>> || std::is_same_v<T, std::complex<double>>)
    x = T(static_cast<typename T::value_type>(float_of(element.as_array().at(0))),
          static_cast<typename T::value_type>(float_of(element.as_array().at(1))));
  else if constexpr (std::is_floating_point_v<T>) x = static_cast<T>(float_of(element));
  else x = element.to_number<T>();
  auto at = array.data.size();
  array.data.resize(at + sizeof(T));
  std::memcpy(array.data.data() + at, &x, sizeof(T));
}

typed_array array_of(const json::object& spec) {
  typed_array array;
  array.type = element_type_named(spec.at("type").as_string());
  for (const auto& element : spec.at("elements").as_array()) {
    switch (array.type) {
      case element_type::float64: append_element<double>(array, element); break;
      case element_type::float32: append_element<float>(array, element); break;
      case element_type::int64: append_element<std::int64_t>(array, element); break;
      case element_type::int32: append_element<std::int32_t>(array, element); break;
      case element_type::int16: append_element<std::int16_t>(array, element); break;
      case element_type::int8: append_element<std::int8_t>(array, element); break;
      case element_type::uint64: append_element<std::uint64_t>(array, element); break;
      case element_type::uint32: append_element<std::uint32_t>(array, element); break;
      case element_type::uint16: append_element<std::uint16_t>(array, element); break;
      case element_type::uint8: append_element<std::uint8_t>(array, element); break;
      case element_type::complex64: append_element<std::complex<float>>(array, element); break;
      case element_type::complex128: append_element<std::complex<double>>(array, element); break;
      case element_type::boolean: append_element<bool>(array, element); break;
    }
  }
  if (auto shape = spec.if_contains("shape"))
    for (const auto& d : shape->as_array()) array.shape.push_back(d.to_number<std::uint32_t>());
  return array;
}

// A vector's value ({"int": 1}, {"list": [...]}, ...) as a labhost value.
value value_of(const json::value& spec) {
  const auto& object = spec.as_object();
  BOOST_TEST_REQUIRE(object.size() == 1u);
  const auto& [kind, content] = *object.begin();
  if (kind == "null") return nullptr;
  if (kind == "bool") return content.as_bool();
  if (kind == "int") return content.to_number<std::int64_t>();
  if (kind == "float") return float_of(content);
  if (kind == "string") return std::string(content.as_string());
  if (kind == "bytes") return bytes{from_hex(content.as_string())};
  if (kind == "list") {
    list items;
    for (const auto& item : content.as_array()) items.push_back(value_of(item));
    return items;
  }
  if (kind == "map") {
    map entries;
    for (const auto& entry : content.as_array())
      entries.emplace_back(std::string(entry.as_array().at(0).as_string()), value_of(entry.as_array().at(1)));
    return entries;
  }
  if (kind == "array") return array_of(content.as_object());
  BOOST_FAIL("unknown value kind " << kind);
  return nullptr;
}

std::string_view status_name(decode_status status) {
  switch (status) {
    case decode_status::ok: return "ok";
    case decode_status::truncated: return "truncated";
    case decode_status::bad_tag: return "bad_tag";
    case decode_status::bad_bool: return "bad_bool";
    case decode_status::bad_utf8: return "bad_utf8";
    case decode_status::bad_element_type: return "bad_element_type";
    case decode_status::bad_shape: return "bad_shape";
    case decode_status::too_deep: return "too_deep";
    case decode_status::too_many_items: return "too_many_items";
    case decode_status::trailing_bytes: return "trailing_bytes";
  }
  return "unknown";
}

std::span<const std::uint8_t, protocol::header_size> header_span(const std::vector<std::uint8_t>& bytes) {
  BOOST_TEST_REQUIRE(bytes.size() == protocol::header_size);
  return std::span<const std::uint8_t, protocol::header_size>(bytes.data(), protocol::header_size);
}

protocol::message_type message_type_named(std::string_view name) {
  for (int byte = 0; byte <= 255; ++byte) {
    auto type = static_cast<protocol::message_type>(byte);
    if (protocol::is_known_message_type(static_cast<std::uint8_t>(byte)) && protocol::message_type_name(type) == name)
      return type;
  }
  BOOST_FAIL("unknown message type " << name);
  return protocol::message_type::ping;
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_value_encodes_to_its_bytes_and_decodes_back) {
  auto vectors = read_vectors("values.json");
  for (const auto& entry : vectors.at("values").as_array()) {
    const auto& vector = entry.as_object();
    BOOST_TEST_CONTEXT(vector.at("name").as_string()) {
      auto expected = value_of(vector.at("value"));
      auto hex = std::string(vector.at("hex").as_string());
      // Encoding compares bytes, so a float's sign and bits are checked, not just its value.
      BOOST_TEST(to_hex(encode(expected)) == hex);
      auto decoded = decode(from_hex(hex));
      BOOST_TEST_REQUIRE(decoded.ok(), decoded.message());
      BOOST_TEST((decoded.decoded == expected));
      BOOST_TEST(to_hex(encode(decoded.decoded)) == hex);
    }
  }
}

BOOST_AUTO_TEST_CASE(each_malformed_value_is_refused_where_the_vector_says) {
  auto vectors = read_vectors("values.json");
  for (const auto& entry : vectors.at("malformed").as_array()) {
    const auto& vector = entry.as_object();
    BOOST_TEST_CONTEXT(vector.at("name").as_string()) {
      auto decoded = decode(from_hex(vector.at("hex").as_string()));
      BOOST_TEST(status_name(decoded.status) == std::string_view(vector.at("status").as_string()));
      auto offset = vector.at("offset").to_number<std::size_t>();
      BOOST_TEST(decoded.error_offset == offset);
      auto suffix = " at byte " + std::to_string(offset);
      auto message = decoded.message();
      BOOST_TEST(message.ends_with(suffix), message);
    }
  }
}

BOOST_AUTO_TEST_CASE(each_header_is_written_and_read_as_its_bytes) {
  auto vectors = read_vectors("frames.json");
  for (const auto& entry : vectors.at("headers").as_array()) {
    const auto& vector = entry.as_object();
    BOOST_TEST_CONTEXT(vector.at("hex").as_string()) {
      protocol::frame_header header;
      header.type = message_type_named(vector.at("type").as_string());
      header.request_id = vector.at("request_id").to_number<std::uint32_t>();
      header.payload_size = vector.at("payload_size").to_number<std::uint32_t>();
      std::vector<std::uint8_t> written(protocol::header_size);
      protocol::write_header(header, std::span<std::uint8_t, protocol::header_size>(written.data(), protocol::header_size));
      BOOST_TEST(to_hex(written) == std::string_view(vector.at("hex").as_string()));

      auto bytes = from_hex(vector.at("hex").as_string());
      auto parsed = protocol::parse_header(header_span(bytes), limits::default_max_frame_bytes);
      BOOST_TEST_REQUIRE(parsed.ok());
      BOOST_TEST((parsed->type == header.type));
      BOOST_TEST(parsed->request_id == header.request_id);
      BOOST_TEST(parsed->payload_size == header.payload_size);
    }
  }
}

BOOST_AUTO_TEST_CASE(each_bad_header_is_refused_with_its_error) {
  auto vectors = read_vectors("frames.json");
  for (const auto& entry : vectors.at("bad_headers").as_array()) {
    const auto& vector = entry.as_object();
    BOOST_TEST_CONTEXT(vector.at("name").as_string()) {
      auto max_payload = vector.contains("max_payload") ? vector.at("max_payload").to_number<std::uint32_t>()
                                                        : limits::default_max_frame_bytes;
      auto bytes = from_hex(vector.at("hex").as_string());
      auto parsed = protocol::parse_header(header_span(bytes), max_payload);
      BOOST_TEST_REQUIRE(!parsed.ok());
      BOOST_TEST(parsed.err().name() == std::string_view(vector.at("error").as_string()));
    }
  }
}

BOOST_AUTO_TEST_CASE(each_address_parses_and_prints_as_the_vector_says) {
  auto vectors = read_vectors("addresses.json");
  for (const auto& entry : vectors.at("addresses").as_array()) {
    const auto& vector = entry.as_object();
    auto text = std::string(vector.at("text").as_string());
    BOOST_TEST_CONTEXT("address \"" << text << "\"") {
      if (vector.contains("error")) {
        try {
          service_address::parse(text);
          BOOST_ERROR("accepted");
        } catch (const remote_error& e) {
          BOOST_TEST(e.name() == std::string_view(vector.at("error").as_string()));
        }
        continue;
      }
      auto address = service_address::parse(text);
      BOOST_TEST(address.host == std::string_view(vector.at("host").as_string()));
      BOOST_TEST(address.port == vector.at("port").to_number<std::uint16_t>());
      BOOST_TEST(address.service == std::string_view(vector.at("service").as_string()));
      BOOST_TEST(address.to_string() == std::string_view(vector.at("canonical").as_string()));
    }
  }
}

BOOST_AUTO_TEST_CASE(the_error_codes_are_exactly_the_listed_ones) {
  auto vectors = read_vectors("errors.json");
  std::set<std::pair<int, std::string>> listed;
  for (const auto& entry : vectors.at("errors").as_array())
    listed.emplace(entry.at("code").to_number<int>(), std::string(entry.at("name").as_string()));
  std::set<std::pair<int, std::string>> known;
  for (int code = 0; code <= 0xffff; ++code) {
    auto name = errc_name(static_cast<errc>(code));
    if (name != "unknown_error") known.emplace(code, std::string(name));
  }
  BOOST_TEST(listed.size() == vectors.at("errors").as_array().size(), "a code or name is listed twice");
  BOOST_TEST((known == listed));
}

BOOST_AUTO_TEST_CASE(each_secret_file_holds_the_secret_the_vector_says) {
  auto vectors = read_vectors("secrets.json");
  labhost::testing::temp_dir dir;
  for (const auto& entry : vectors.at("secrets").as_array()) {
    const auto& vector = entry.as_object();
    BOOST_TEST_CONTEXT(vector.at("name").as_string()) {
      auto file = dir.path() / "secret";
      std::ofstream(file, std::ios::binary | std::ios::trunc) << std::string_view(vector.at("file").as_string());
      auto secret = protocol::read_secret_file(file);
      if (vector.contains("error")) {
        BOOST_TEST(!secret.ok());
      } else {
        BOOST_TEST_REQUIRE(secret.ok(), (secret.ok() ? std::string() : secret.err().to_string()));
        BOOST_TEST(secret.value() == std::string_view(vector.at("secret").as_string()));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(the_limits_are_the_listed_ones) {
  auto vectors = read_vectors("limits.json");
  auto number = [&](const char* key) { return vectors.at(key).to_number<std::uint64_t>(); };
  BOOST_TEST(number("protocol_version") == protocol::protocol_version);
  BOOST_TEST(number("oldest_protocol_version") == protocol::oldest_protocol_version);
  BOOST_TEST(number("framing_version") == protocol::framing_version);
  BOOST_TEST(number("header_size") == protocol::header_size);
  BOOST_TEST(number("nonce_size") == protocol::nonce_size);
  BOOST_TEST(number("max_frame_bytes") == limits::default_max_frame_bytes);
  BOOST_TEST(number("pre_handshake_max_payload") == limits::pre_handshake_max_payload);
  BOOST_TEST(number("max_value_depth") == limits::default_max_value_depth);
  BOOST_TEST(number("max_value_items") == limits::default_max_value_items);
  BOOST_TEST(number("busy_poll_us") == static_cast<std::uint64_t>(limits::default_busy_poll.count()));
  // The codec's own defaults are the same limits.
  decode_limits codec;
  BOOST_TEST(codec.max_depth == limits::default_max_value_depth);
  BOOST_TEST(codec.max_items == limits::default_max_value_items);
}
