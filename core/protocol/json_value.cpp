#include "json_value.h"

#include <boost/json.hpp>
#include <charconv>
#include <complex>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace labhost::protocol {
namespace {

std::string base64(const std::vector<std::uint8_t>& data) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    std::uint32_t n = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  if (i + 1 == data.size()) {
    std::uint32_t n = data[i] << 16;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    std::uint32_t n = (data[i] << 16) | (data[i + 1] << 8);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

void write_double(double d, std::string& out) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, d);
  std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
  out += text;
  // Keep a float recognisable as one: 2.0 prints as "2.0", not "2".
  if (text.find_first_of(".eEn") == std::string_view::npos) out += ".0";
}

void write_string(std::string_view s, std::string& out) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

template <typename T>
void write_elements(const typed_array& a, std::string& out) {
  for (std::size_t i = 0; i < a.count(); ++i) {
    if (i) out += ',';
    T element = a.at<T>(i);
    if constexpr (std::is_same_v<T, bool>) {
      out += element ? "true" : "false";
    } else if constexpr (std::is_same_v<T, std::complex<float>> || std::is_same_v<T, std::complex<double>>) {
      out += '[';  // [real, imaginary]
      write_double(static_cast<double>(element.real()), out);
      out += ',';
      write_double(static_cast<double>(element.imag()), out);
      out += ']';
    } else if constexpr (std::is_floating_point_v<T>) {
      write_double(static_cast<double>(element), out);
    } else {
      char buffer[24];
      auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, element);
      out.append(buffer, end);
    }
  }
}

void write_array(const typed_array& a, std::string& out) {
  switch (a.type) {
    case element_type::float64: write_elements<double>(a, out); break;
    case element_type::float32: write_elements<float>(a, out); break;
    case element_type::int64: write_elements<std::int64_t>(a, out); break;
    case element_type::int32: write_elements<std::int32_t>(a, out); break;
    case element_type::int16: write_elements<std::int16_t>(a, out); break;
    case element_type::int8: write_elements<std::int8_t>(a, out); break;
    case element_type::uint64: write_elements<std::uint64_t>(a, out); break;
    case element_type::uint32: write_elements<std::uint32_t>(a, out); break;
    case element_type::uint16: write_elements<std::uint16_t>(a, out); break;
    case element_type::uint8: write_elements<std::uint8_t>(a, out); break;
    case element_type::complex64: write_elements<std::complex<float>>(a, out); break;
    case element_type::complex128: write_elements<std::complex<double>>(a, out); break;
    case element_type::boolean: write_elements<bool>(a, out); break;
  }
}

void write_json(const value& v, std::size_t max_array_elements, std::string& out) {
  switch (v.kind()) {
    case value_kind::null: out += "null"; return;
    case value_kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case value_kind::int64: out += std::to_string(v.as_int()); return;
    case value_kind::float64: write_double(v.as_float(), out); return;
    case value_kind::string: write_string(v.as_string(), out); return;
    case value_kind::bytes:
      out += "{\"bytes_base64\":\"" + base64(v.as_bytes().data) + "\"}";
      return;
    case value_kind::list: {
      out += '[';
      bool first = true;
      for (const auto& element : v.as_list()) {
        if (!first) out += ',';
        first = false;
        write_json(element, max_array_elements, out);
      }
      out += ']';
      return;
    }
    case value_kind::map: {
      out += '{';
      bool first = true;
      for (const auto& [key, element] : v.as_map()) {
        if (!first) out += ',';
        first = false;
        write_string(key, out);
        out += ':';
        write_json(element, max_array_elements, out);
      }
      out += '}';
      return;
    }
    case value_kind::array: {
      const auto& a = v.as_array();
      out += "{\"dtype\":\"" + std::string(element_type_name(a.type)) + "\",\"count\":" +
             std::to_string(a.count());
      if (!a.shape.empty()) {  // the data below stays flat, in row-major order
        out += ",\"shape\":[";
        for (std::size_t i = 0; i < a.shape.size(); ++i) out += (i ? "," : "") + std::to_string(a.shape[i]);
        out += ']';
      }
      if (a.count() <= max_array_elements) {
        out += ",\"data\":[";
        write_array(a, out);
        out += ']';
      }
      out += '}';
      return;
    }
  }
}

}  // namespace

value json_to_value(const boost::json::value& json) {
  switch (json.kind()) {
    case boost::json::kind::null: return nullptr;
    case boost::json::kind::bool_: return json.get_bool();
    case boost::json::kind::int64: return json.get_int64();
    case boost::json::kind::uint64: {
      std::uint64_t u = json.get_uint64();
      if (u <= static_cast<std::uint64_t>(INT64_MAX)) return static_cast<std::int64_t>(u);
      return static_cast<double>(u);
    }
    case boost::json::kind::double_: return json.get_double();
    case boost::json::kind::string: return std::string(json.get_string());
    case boost::json::kind::array: {
      list l;
      l.reserve(json.get_array().size());
      for (const auto& element : json.get_array()) l.push_back(json_to_value(element));
      return l;
    }
    case boost::json::kind::object: {
      map m;
      m.reserve(json.get_object().size());
      for (const auto& [key, element] : json.get_object())
        m.emplace_back(std::string(key), json_to_value(element));
      return m;
    }
  }
  return nullptr;
}

std::string to_json_text(const value& v, std::size_t max_array_elements) {
  std::string out;
  write_json(v, max_array_elements, out);
  return out;
}

}  // namespace labhost::protocol
