// labhost/limits.h: the protocol's default limits, in one place for the daemon, the C++
// client and the tools (the Python client and tests/vectors/limits.json repeat them, checked
// by the conformance tests).
#ifndef LABHOST_LIMITS_H
#define LABHOST_LIMITS_H

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace labhost::limits {

/// The largest payload a peer accepts unless configured otherwise (host.json
/// max_frame_bytes, client_options::max_frame_bytes): a few camera frames.
inline constexpr std::uint32_t default_max_frame_bytes = 64u << 20;
/// The largest payload a daemon accepts from a connection without a session (hello,
/// authenticate are tiny): a stranger cannot make it hold max_frame_bytes per connection.
inline constexpr std::uint32_t pre_handshake_max_payload = 64u << 10;
/// Lists and maps nested deeper in one value are refused (host.json max_value_depth).
inline constexpr std::size_t default_max_value_depth = 64;
/// List and map entries in one value, all levels (host.json max_value_items).
inline constexpr std::size_t default_max_value_items = std::size_t{1} << 22;
/// How long a reader polls for the next bytes before it sleeps (host.json busy_poll_us,
/// client_options::busy_poll): longer than a small call takes end to end, far shorter than
/// what a sleeping reader would save a CPU for (docs/performance.md).
inline constexpr std::chrono::microseconds default_busy_poll{50};

}  // namespace labhost::limits

#endif  // LABHOST_LIMITS_H
