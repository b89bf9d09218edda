// value_versions.h: values as a protocol-version-1 peer can take them (docs/protocol.md,
// "Older peers").
//
// Version 2 added shaped arrays (tag 9) and the element types complex64, complex128 and bool.
// A version-1 client, and a driver built for ABI 1.0 or 1.1, know neither: a shaped array of
// a version-1 element type reaches them flat (row-major), and an array of a version-2 element
// type cannot reach them at all. No I/O; not thread-safe per value.
#ifndef LABHOST_PROTOCOL_VALUE_VERSIONS_H
#define LABHOST_PROTOCOL_VALUE_VERSIONS_H

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "frame_buffer.h"
#include "labhost/errors.h"
#include "labhost/value.h"

namespace labhost::protocol {

/// True when an encoded value (assumed well formed, as a driver's output) holds anything of
/// version 2: a shaped array or an element type after uint8. Reads without allocating.
bool uses_version_2(std::span<const std::uint8_t> encoded) noexcept;

/// Makes `v` version 1: every shaped array flat. When an array of a version-2 element type is
/// in it, returns that type's name ("complex64") and leaves `v` partly converted.
std::optional<std::string> to_version_1(value& v);

/// Makes the `result` frame in `frame` (header included) fit a version-1 session: shaped
/// arrays flat, the header's length updated. Most frames need nothing, and a frame that is
/// one shaped array written in place only has its prefix rewritten. Errors:
/// unsupported_version when the result holds an array of a version-2 element type.
std::optional<error> downgrade_result_frame(frame_buffer& frame);

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_VALUE_VERSIONS_H
