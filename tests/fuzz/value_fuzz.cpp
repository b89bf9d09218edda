// libFuzzer target: the value codec, and what a version-1 peer is given. Whatever decodes
// must encode back to the same bytes; the version-1 walk must agree with the decoded value,
// and a value made version 1 must hold nothing of version 2.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "labhost/value_codec.h"
#include "protocol/value_versions.h"

namespace {

bool holds_version_2(const labhost::value& v) {
  using labhost::value_kind;
  switch (v.kind()) {
    case value_kind::array:
      return !v.as_array().shape.empty() || v.as_array().type > labhost::last_v1_element_type;
    case value_kind::list:
      return std::any_of(v.as_list().begin(), v.as_list().end(), holds_version_2);
    case value_kind::map:
      return std::any_of(v.as_map().begin(), v.as_map().end(), [](const auto& e) { return holds_version_2(e.second); });
    default:
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  labhost::decode_limits limits;
  limits.max_items = 1u << 16;
  auto decoded = labhost::decode(std::span(data, size), limits);
  if (!decoded.ok()) return 0;
  auto encoded = labhost::encode(decoded.decoded);
  // The encoding is canonical: a decoded value encodes to exactly its input.
  if (encoded.size() != size || !std::equal(encoded.begin(), encoded.end(), data)) std::abort();
  // The walk that decides whether a result needs rewriting for a version-1 client sees what
  // the decoder sees.
  if (labhost::protocol::uses_version_2(std::span(data, size)) != holds_version_2(decoded.decoded)) std::abort();
  labhost::value older = decoded.decoded;
  if (!labhost::protocol::to_version_1(older) && holds_version_2(older)) std::abort();
  return 0;
}
