// frame.h: the fixed 16-byte frame header of labhost's wire protocol (docs/protocol.md).
//
// No I/O here: readers parse the header, check the payload length against their own
// maximum BEFORE allocating, then read the payload. All integers are little-endian.
#ifndef LABHOST_PROTOCOL_FRAME_H
#define LABHOST_PROTOCOL_FRAME_H

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "labhost/errors.h"

namespace labhost::protocol {

constexpr std::array<std::uint8_t, 4> frame_magic = {'L', 'H', 'S', 'T'};
/// The header's version byte: how frames are cut, the same in protocol versions 1 and 2.
constexpr std::uint8_t framing_version = 1;
/// The protocol versions this code speaks (hello's range, welcome's version).
constexpr std::int64_t oldest_protocol_version = 1;
constexpr std::int64_t protocol_version = 2;
constexpr std::size_t header_size = 16;

/// Message types; the numbers are the wire byte at offset 5.
enum class message_type : std::uint8_t {
  hello = 1,        // client -> daemon: opens a session
  welcome = 2,      // daemon -> client: session accepted
  call = 3,         // client -> daemon: call a method
  result = 4,       // daemon -> client: a call's return value
  error = 5,        // daemon -> client: a request failed (typed error)
  describe = 6,     // client -> daemon: list services, or one service's methods
  description = 7,  // daemon -> client: answer to describe
  ping = 8,         // either way: liveness (also the client's heartbeat)
  pong = 9,         // answer to ping
  goodbye = 10,     // client -> daemon: ends the session cleanly
  lock = 11,        // client -> daemon: lock a service for this session (answered by result)
  unlock = 12,      // client -> daemon: release it, or force-release it (admin)
  lock_status = 13, // client -> daemon: who holds which lock (answered by result)
  challenge = 14,   // daemon -> client: answer to hello when the daemon requires a secret
  authenticate = 15,// client -> daemon: proof of the secret, answered by welcome
  subscribe = 16,   // client -> daemon: receive a topic's events (version 2; answered by result)
  unsubscribe = 17, // client -> daemon: stop them (version 2; answered by result)
  event = 18,       // daemon -> client: one published value; request id = subscription id
};

/// Name of a message type for logs ("call"), or "unknown".
std::string_view message_type_name(message_type type) noexcept;
bool is_known_message_type(std::uint8_t byte) noexcept;

struct frame_header {
  std::uint8_t version = framing_version;
  message_type type = message_type::ping;
  std::uint16_t flags = 0;
  std::uint32_t request_id = 0;
  std::uint32_t payload_size = 0;
};

/// Writes the 16 header bytes to `out` (which must hold header_size bytes).
void write_header(const frame_header& header, std::span<std::uint8_t, header_size> out) noexcept;

/// Parses and checks a header: magic, version, known type, payload_size <= max_payload.
/// On failure the error is bad_frame or unsupported_version with a message saying why.
result<frame_header> parse_header(std::span<const std::uint8_t, header_size> in,
                                  std::uint32_t max_payload) noexcept;

/// A complete frame ready to send: header bytes followed by the payload.
std::vector<std::uint8_t> make_frame(message_type type, std::uint32_t request_id,
                                     std::span<const std::uint8_t> payload);

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_FRAME_H
