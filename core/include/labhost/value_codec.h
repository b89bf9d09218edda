// labhost/value_codec.h: the tagged binary encoding of labhost::value (docs/protocol.md).
//
// The encoder is beside the decoder so the two stay in step. Decoding takes untrusted bytes:
// it never throws on bad input, never reads past the span, checks every length against the
// bytes that remain before allocating, and bounds nesting depth and element count.
// Header-only and standard-library-only: it is part of the driver SDK.
#ifndef LABHOST_VALUE_CODEC_H
#define LABHOST_VALUE_CODEC_H

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "labhost/limits.h"
#include "labhost/value.h"

namespace labhost {

static_assert(std::endian::native == std::endian::little,
              "labhost's wire format and typed arrays assume a little-endian host");

/// Bounds applied while decoding untrusted input.
/// The wire tag of a typed array with a shape (protocol version 2). A shaped array is a
/// value of kind `array` whose typed_array::shape is not empty; flat arrays keep tag 8.
inline constexpr std::uint8_t shaped_array_tag = 9;

struct decode_limits {
  std::size_t max_depth = limits::default_max_value_depth;  // lists/maps nested deeper are refused
  std::size_t max_items = limits::default_max_value_items;  // list + map entries, all levels
};

enum class decode_status : std::uint8_t {
  ok = 0,
  truncated,         // a length or count points past the end of the input
  bad_tag,           // unknown value tag
  bad_bool,          // a bool byte other than 0 or 1
  bad_utf8,          // a string or map key that is not valid UTF-8
  bad_element_type,  // unknown typed-array element type
  bad_shape,         // a shaped array with fewer than 2 or more than 32 dimensions
  too_deep,          // nesting beyond decode_limits::max_depth
  too_many_items,    // more entries than decode_limits::max_items
  trailing_bytes,    // bytes left after the value where none were expected
};

constexpr std::string_view decode_status_text(decode_status status) noexcept {
  switch (status) {
    case decode_status::ok: return "ok";
    case decode_status::truncated: return "truncated value";
    case decode_status::bad_tag: return "unknown value tag";
    case decode_status::bad_bool: return "bool byte is neither 0 nor 1";
    case decode_status::bad_utf8: return "string is not valid UTF-8";
    case decode_status::bad_element_type: return "unknown typed-array element type";
    case decode_status::bad_shape: return "shaped array needs 2 to 32 dimensions";
    case decode_status::too_deep: return "value nested too deeply";
    case decode_status::too_many_items: return "value has too many entries";
    case decode_status::trailing_bytes: return "bytes left after the value";
  }
  return "unknown decode error";
}

struct decode_result {
  value decoded;                          // null unless status == ok
  decode_status status = decode_status::ok;
  std::size_t error_offset = 0;           // byte offset where decoding failed

  bool ok() const noexcept { return status == decode_status::ok; }
  /// "truncated value at byte 17"
  std::string message() const {
    return std::string(decode_status_text(status)) + " at byte " + std::to_string(error_offset);
  }
};

namespace codec_detail {

inline void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  std::uint8_t b[4];
  std::memcpy(b, &v, 4);
  out.insert(out.end(), b, b + 4);
}

inline void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  std::uint8_t b[8];
  std::memcpy(b, &v, 8);
  out.insert(out.end(), b, b + 8);
}

inline void put_blob(std::vector<std::uint8_t>& out, const void* data, std::size_t size) {
  put_u32(out, static_cast<std::uint32_t>(size));
  const auto* p = static_cast<const std::uint8_t*>(data);
  out.insert(out.end(), p, p + size);
}

/// True when [s, s+n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
inline bool valid_utf8(const std::uint8_t* s, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    std::uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

class decoder {
 public:
  decoder(std::span<const std::uint8_t> in, const decode_limits& limits)
      : in_(in), limits_(limits) {}

  decode_status read(value& out, std::size_t depth) {
    std::uint8_t tag;
    if (!take_u8(tag)) return fail(decode_status::truncated);
    if (tag == shaped_array_tag) return read_array(out, true);
    switch (static_cast<value_kind>(tag)) {
      case value_kind::null:
        out = nullptr;
        return decode_status::ok;
      case value_kind::boolean: {
        std::uint8_t b;
        if (!take_u8(b)) return fail(decode_status::truncated);
        if (b > 1) return fail(decode_status::bad_bool, pos_ - 1);
        out = b == 1;
        return decode_status::ok;
      }
      case value_kind::int64: {
        std::uint64_t u;
        if (!take_u64(u)) return fail(decode_status::truncated);
        out = static_cast<std::int64_t>(u);
        return decode_status::ok;
      }
      case value_kind::float64: {
        std::uint64_t u;
        if (!take_u64(u)) return fail(decode_status::truncated);
        out = std::bit_cast<double>(u);
        return decode_status::ok;
      }
      case value_kind::string: {
        std::string s;
        if (auto st = take_text(s); st != decode_status::ok) return st;
        out = std::move(s);
        return decode_status::ok;
      }
      case value_kind::bytes: {
        std::uint32_t n;
        if (!take_u32(n) || n > remaining()) return fail(decode_status::truncated);
        labhost::bytes b;
        b.data.assign(in_.data() + pos_, in_.data() + pos_ + n);
        pos_ += n;
        out = std::move(b);
        return decode_status::ok;
      }
      case value_kind::list: {
        if (depth >= limits_.max_depth) return fail(decode_status::too_deep, pos_ - 1);
        std::uint32_t n;
        if (!take_u32(n)) return fail(decode_status::truncated);
        if (n > remaining()) return fail(decode_status::truncated);  // >= 1 byte per entry
        if (auto st = count_items(n); st != decode_status::ok) return st;
        labhost::list l(n);
        for (auto& element : l)
          if (auto st = read(element, depth + 1); st != decode_status::ok) return st;
        out = std::move(l);
        return decode_status::ok;
      }
      case value_kind::map: {
        if (depth >= limits_.max_depth) return fail(decode_status::too_deep, pos_ - 1);
        std::uint32_t n;
        if (!take_u32(n)) return fail(decode_status::truncated);
        if (n > remaining() / 5) return fail(decode_status::truncated);  // >= 5 bytes per entry
        if (auto st = count_items(n); st != decode_status::ok) return st;
        labhost::map m(n);
        for (auto& [key, element] : m) {
          if (auto st = take_text(key); st != decode_status::ok) return st;
          if (auto st = read(element, depth + 1); st != decode_status::ok) return st;
        }
        out = std::move(m);
        return decode_status::ok;
      }
      case value_kind::array:
        return read_array(out, false);
    }
    return fail(decode_status::bad_tag, pos_ - 1);
  }

  /// A typed array after its tag: element type, [ndim, dims] when shaped, count, elements.
  decode_status read_array(value& out, bool shaped) {
    std::uint8_t type_byte;
    if (!take_u8(type_byte)) return fail(decode_status::truncated);
    auto type = static_cast<element_type>(type_byte);
    const std::size_t size = element_size(type);
    if (size == 0) return fail(decode_status::bad_element_type, pos_ - 1);
    typed_array a;
    a.type = type;
    std::size_t count = 0;
    if (shaped) {
      std::uint8_t ndim;
      if (!take_u8(ndim)) return fail(decode_status::truncated);
      if (ndim < 2 || ndim > max_array_dimensions) return fail(decode_status::bad_shape, pos_ - 1);
      if (remaining() < 4u * ndim) return fail(decode_status::truncated);
      a.shape.resize(ndim);
      bool empty = false;
      for (auto& d : a.shape) {
        take_u32(d);
        empty = empty || d == 0;
      }
      // The product is checked against the elements left at each step: it cannot overflow.
      const std::size_t most = remaining() / size;
      count = empty ? 0 : 1;
      for (std::size_t i = 0; i < a.shape.size() && count != 0; ++i) {
        if (count > most / a.shape[i]) return fail(decode_status::truncated);
        count *= a.shape[i];
      }
    } else {
      std::uint32_t count32;
      if (!take_u32(count32)) return fail(decode_status::truncated);
      if (count32 > remaining() / size) return fail(decode_status::truncated);
      count = count32;
    }
    const std::uint8_t* first = in_.data() + pos_;
    if (type == element_type::boolean)
      for (std::size_t i = 0; i < count; ++i)
        if (first[i] > 1) return fail(decode_status::bad_bool, pos_ + i);
    a.data.assign(first, first + count * size);
    pos_ += count * size;
    out = std::move(a);
    return decode_status::ok;
  }

  std::size_t position() const noexcept { return pos_; }
  std::size_t error_offset() const noexcept { return error_offset_; }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }

 private:
  decode_status fail(decode_status status) { return fail(status, pos_); }
  decode_status fail(decode_status status, std::size_t offset) {
    error_offset_ = offset;
    return status;
  }

  decode_status count_items(std::uint32_t n) {
    items_ += n;
    if (items_ > limits_.max_items) return fail(decode_status::too_many_items);
    return decode_status::ok;
  }

  bool take_u8(std::uint8_t& v) {
    if (remaining() < 1) return false;
    v = in_[pos_++];
    return true;
  }
  bool take_u32(std::uint32_t& v) {
    if (remaining() < 4) return false;
    std::memcpy(&v, in_.data() + pos_, 4);
    pos_ += 4;
    return true;
  }
  bool take_u64(std::uint64_t& v) {
    if (remaining() < 8) return false;
    std::memcpy(&v, in_.data() + pos_, 8);
    pos_ += 8;
    return true;
  }
  decode_status take_text(std::string& s) {
    std::uint32_t n;
    if (!take_u32(n) || n > remaining()) return fail(decode_status::truncated);
    const std::uint8_t* p = in_.data() + pos_;
    if (!valid_utf8(p, n)) return fail(decode_status::bad_utf8);
    s.assign(reinterpret_cast<const char*>(p), n);
    pos_ += n;
    return decode_status::ok;
  }

  std::span<const std::uint8_t> in_;
  const decode_limits& limits_;
  std::size_t pos_ = 0;
  std::size_t items_ = 0;
  std::size_t error_offset_ = 0;
};

}  // namespace codec_detail

/// Writes what comes before a typed array's elements into `out` (at least
/// array_prefix_size(shape) bytes); returns the bytes written. The tag is 8 for a flat array,
/// else 9 with the shape. REQUIRES: count fits in u32 for a flat array.
inline std::size_t write_array_prefix(std::uint8_t* out, element_type type, std::size_t count,
                                      std::span<const std::uint32_t> shape) noexcept {
  std::size_t n = 0;
  if (shape.empty()) {
    out[n++] = static_cast<std::uint8_t>(value_kind::array);
    out[n++] = static_cast<std::uint8_t>(type);
    const auto count32 = static_cast<std::uint32_t>(count);
    std::memcpy(out + n, &count32, 4);
    return n + 4;
  }
  out[n++] = shaped_array_tag;
  out[n++] = static_cast<std::uint8_t>(type);
  out[n++] = static_cast<std::uint8_t>(shape.size());
  for (std::uint32_t d : shape) {
    std::memcpy(out + n, &d, 4);
    n += 4;
  }
  return n;
}

/// Bytes before a typed array's elements: 6 when flat, 3 + 4 per dimension when shaped.
constexpr std::size_t array_prefix_size(std::size_t dimensions_in_shape) noexcept {
  return dimensions_in_shape == 0 ? 6 : 3 + 4 * dimensions_in_shape;
}

namespace codec_detail {
inline void put_array_prefix(std::vector<std::uint8_t>& out, element_type type, std::size_t count,
                             std::span<const std::uint32_t> shape) {
  std::uint8_t prefix[array_prefix_size(max_array_dimensions)];
  out.insert(out.end(), prefix, prefix + write_array_prefix(prefix, type, count, shape));
}
}  // namespace codec_detail

/// Appends the encoding of `v` to `out`.
inline void encode(const value& v, std::vector<std::uint8_t>& out) {
  using namespace codec_detail;
  if (v.kind() != value_kind::array) out.push_back(static_cast<std::uint8_t>(v.kind()));
  switch (v.kind()) {
    case value_kind::null:
      break;
    case value_kind::boolean:
      out.push_back(v.as_bool() ? 1 : 0);
      break;
    case value_kind::int64:
      put_u64(out, static_cast<std::uint64_t>(v.as_int()));
      break;
    case value_kind::float64:
      put_u64(out, std::bit_cast<std::uint64_t>(v.as_float()));
      break;
    case value_kind::string:
      put_blob(out, v.as_string().data(), v.as_string().size());
      break;
    case value_kind::bytes:
      put_blob(out, v.as_bytes().data.data(), v.as_bytes().data.size());
      break;
    case value_kind::list:
      put_u32(out, static_cast<std::uint32_t>(v.as_list().size()));
      for (const auto& element : v.as_list()) encode(element, out);
      break;
    case value_kind::map:
      put_u32(out, static_cast<std::uint32_t>(v.as_map().size()));
      for (const auto& [key, element] : v.as_map()) {
        put_blob(out, key.data(), key.size());
        encode(element, out);
      }
      break;
    case value_kind::array: {
      const auto& a = v.as_array();
      put_array_prefix(out, a.type, a.count(), a.shape);
      out.insert(out.end(), a.data.begin(), a.data.end());
      break;
    }
  }
}

inline std::vector<std::uint8_t> encode(const value& v) {
  std::vector<std::uint8_t> out;
  encode(v, out);
  return out;
}

/// Decodes exactly one value filling all of `in`.
inline decode_result decode(std::span<const std::uint8_t> in, const decode_limits& limits = {}) {
  codec_detail::decoder d(in, limits);
  decode_result r;
  r.status = d.read(r.decoded, 0);
  if (r.status == decode_status::ok && d.remaining() != 0) {
    r.status = decode_status::trailing_bytes;
    r.error_offset = d.position();
  } else if (r.status != decode_status::ok) {
    r.error_offset = d.error_offset();
  }
  if (!r.ok()) r.decoded = nullptr;
  return r;
}

}  // namespace labhost

#endif  // LABHOST_VALUE_CODEC_H
