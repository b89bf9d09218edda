#include "value_versions.h"

#include <cstring>
#include <limits>

#include "frame.h"
#include "labhost/value_codec.h"

namespace labhost::protocol {

namespace {

bool is_version_2_element(std::uint8_t type) noexcept {
  return type > static_cast<std::uint8_t>(last_v1_element_type);
}

/// Walks one encoded value from `pos`; sets `found` on anything of version 2. Returns the
/// position after it, or npos when the bytes end early.
constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

std::size_t skip(std::span<const std::uint8_t> in, std::size_t pos, bool& found) noexcept {
  auto u32_at = [&](std::size_t at) -> std::size_t {
    if (at + 4 > in.size()) return npos;
    std::uint32_t v;
    std::memcpy(&v, in.data() + at, 4);
    return v;
  };
  if (pos >= in.size() || found) return npos;
  switch (in[pos]) {
    case static_cast<std::uint8_t>(value_kind::null): return pos + 1;
    case static_cast<std::uint8_t>(value_kind::boolean): return pos + 2;
    case static_cast<std::uint8_t>(value_kind::int64):
    case static_cast<std::uint8_t>(value_kind::float64): return pos + 9;
    case static_cast<std::uint8_t>(value_kind::string):
    case static_cast<std::uint8_t>(value_kind::bytes): {
      const std::size_t n = u32_at(pos + 1);
      return n == npos ? npos : pos + 5 + n;
    }
    case static_cast<std::uint8_t>(value_kind::list): {
      std::size_t n = u32_at(pos + 1);
      if (n == npos) return npos;
      pos += 5;
      while (n-- > 0 && pos != npos) pos = skip(in, pos, found);
      return pos;
    }
    case static_cast<std::uint8_t>(value_kind::map): {
      std::size_t n = u32_at(pos + 1);
      if (n == npos) return npos;
      pos += 5;
      while (n-- > 0 && pos != npos) {
        const std::size_t key = u32_at(pos);
        if (key == npos) return npos;
        pos = skip(in, pos + 4 + key, found);
      }
      return pos;
    }
    case static_cast<std::uint8_t>(value_kind::array): {
      if (pos + 6 > in.size()) return npos;
      if (is_version_2_element(in[pos + 1])) found = true;
      return pos + 6 + std::size_t{static_cast<std::uint32_t>(u32_at(pos + 2))} *
                           element_size(static_cast<element_type>(in[pos + 1]));
    }
    case shaped_array_tag:
      found = true;
      return npos;
  }
  return npos;  // not a tag: nothing more to learn
}

/// The error a version-1 session gets for a result it cannot be given.
error cannot_carry(const std::string& element) {
  return {errc::unsupported_version, "the result holds an array of " + element +
                                         " elements, which protocol version 1 cannot carry: use a "
                                         "client that speaks version 2"};
}

}  // namespace

bool uses_version_2(std::span<const std::uint8_t> encoded) noexcept {
  bool found = false;
  skip(encoded, 0, found);
  return found;
}

std::optional<std::string> to_version_1(value& v) {
  switch (v.kind()) {
    case value_kind::array: {
      auto& a = v.as_array();
      if (is_version_2_element(static_cast<std::uint8_t>(a.type))) return std::string(element_type_name(a.type));
      a.shape.clear();
      return std::nullopt;
    }
    case value_kind::list:
      for (auto& element : v.as_list())
        if (auto refused = to_version_1(element)) return refused;
      return std::nullopt;
    case value_kind::map:
      for (auto& [key, element] : v.as_map())
        if (auto refused = to_version_1(element)) return refused;
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::optional<error> downgrade_result_frame(frame_buffer& frame) {
  auto& head = frame.head();
  std::uint32_t request_id;  // taken now: the head may be rebuilt below
  std::memcpy(&request_id, head.data() + 8, 4);
  const auto tail = frame.tail();
  const std::span<const std::uint8_t> head_payload(head.data() + header_size, head.size() - header_size);
  // One shaped array written in place: its prefix is the whole head payload, its elements the
  // tail. Only the prefix changes.
  if (!tail.empty() && !head_payload.empty() && head_payload[0] == shaped_array_tag && head_payload.size() >= 3 &&
      head_payload.size() == array_prefix_size(head_payload[2])) {
    const std::uint8_t type = head_payload[1];
    if (is_version_2_element(type)) return cannot_carry(std::string(element_type_name(static_cast<element_type>(type))));
    const std::size_t count = tail.size() / element_size(static_cast<element_type>(type));
    if (count > std::numeric_limits<std::uint32_t>::max()) return cannot_carry("more than 2^32");
    std::uint8_t prefix[array_prefix_size(0)];
    const std::size_t n = write_array_prefix(prefix, static_cast<element_type>(type), count, {});
    head.resize(header_size);
    head.insert(head.end(), prefix, prefix + n);
  } else if (!tail.empty() && head_payload.size() == array_prefix_size(0) &&
             head_payload[0] == static_cast<std::uint8_t>(value_kind::array)) {
    // One flat array written in place (a version-1 camera frame): only its type matters.
    const std::uint8_t type = head_payload[1];
    if (is_version_2_element(type)) return cannot_carry(std::string(element_type_name(static_cast<element_type>(type))));
    return std::nullopt;
  } else {
    // Anything else: look first (a walk, no allocation); convert only what needs it.
    const auto whole = tail.empty() ? std::vector<std::uint8_t>() : frame.contiguous();
    const std::span<const std::uint8_t> payload =
        tail.empty() ? head_payload : std::span<const std::uint8_t>(whole).subspan(header_size);
    if (!uses_version_2(payload)) return std::nullopt;
    decode_limits unlimited{std::numeric_limits<std::size_t>::max(), std::numeric_limits<std::size_t>::max()};
    auto decoded = decode(payload, unlimited);
    if (!decoded.ok()) return error{errc::internal_error, "result: " + decoded.message()};
    if (auto refused = to_version_1(decoded.decoded)) return cannot_carry(*refused);
    std::vector<std::uint8_t> reencoded(header_size);
    encode(decoded.decoded, reencoded);
    frame.truncate(0);
    head = std::move(reencoded);
  }
  frame_header h;
  h.type = message_type::result;
  h.request_id = request_id;
  h.payload_size = static_cast<std::uint32_t>(frame.size() - header_size);
  write_header(h, std::span<std::uint8_t, header_size>(head.data(), header_size));
  return std::nullopt;
}

}  // namespace labhost::protocol
