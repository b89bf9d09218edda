// libFuzzer target: the value codec. Whatever decodes must encode back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "labhost/value_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  labhost::decode_limits limits;
  limits.max_items = 1u << 16;
  auto decoded = labhost::decode(std::span(data, size), limits);
  if (!decoded.ok()) return 0;
  auto encoded = labhost::encode(decoded.decoded);
  // The encoding is canonical: a decoded value encodes to exactly its input.
  if (encoded.size() != size || !std::equal(encoded.begin(), encoded.end(), data)) std::abort();
  return 0;
}
