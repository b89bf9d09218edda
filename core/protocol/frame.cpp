#include "frame.h"

#include <cstring>
#include <string>

namespace labhost::protocol {

std::string_view message_type_name(message_type type) noexcept {
  switch (type) {
    case message_type::hello: return "hello";
    case message_type::welcome: return "welcome";
    case message_type::call: return "call";
    case message_type::result: return "result";
    case message_type::error: return "error";
    case message_type::describe: return "describe";
    case message_type::description: return "description";
    case message_type::ping: return "ping";
    case message_type::pong: return "pong";
    case message_type::goodbye: return "goodbye";
    case message_type::lock: return "lock";
    case message_type::unlock: return "unlock";
    case message_type::lock_status: return "lock_status";
    case message_type::challenge: return "challenge";
    case message_type::authenticate: return "authenticate";
    case message_type::subscribe: return "subscribe";
    case message_type::unsubscribe: return "unsubscribe";
    case message_type::event: return "event";
  }
  return "unknown";
}

bool is_known_message_type(std::uint8_t byte) noexcept {
  return message_type_name(static_cast<message_type>(byte)) != "unknown";
}

void write_header(const frame_header& header, std::span<std::uint8_t, header_size> out) noexcept {
  std::memcpy(out.data(), frame_magic.data(), 4);
  out[4] = header.version;
  out[5] = static_cast<std::uint8_t>(header.type);
  std::memcpy(out.data() + 6, &header.flags, 2);
  std::memcpy(out.data() + 8, &header.request_id, 4);
  std::memcpy(out.data() + 12, &header.payload_size, 4);
}

result<frame_header> parse_header(std::span<const std::uint8_t, header_size> in,
                                  std::uint32_t max_payload) noexcept {
  if (std::memcmp(in.data(), frame_magic.data(), 4) != 0)
    return error{errc::bad_frame, "bad magic: not a labhost frame"};
  frame_header h;
  h.version = in[4];
  if (h.version != framing_version)
    return error{errc::unsupported_version, "frame version " + std::to_string(h.version) +
                                                ", this peer speaks version " +
                                                std::to_string(framing_version)};
  if (!is_known_message_type(in[5]))
    return error{errc::bad_frame, "unknown message type " + std::to_string(in[5])};
  h.type = static_cast<message_type>(in[5]);
  std::memcpy(&h.flags, in.data() + 6, 2);
  std::memcpy(&h.request_id, in.data() + 8, 4);
  std::memcpy(&h.payload_size, in.data() + 12, 4);
  if (h.payload_size > max_payload)
    return error{errc::bad_frame, "payload of " + std::to_string(h.payload_size) +
                                      " bytes exceeds the maximum of " +
                                      std::to_string(max_payload)};
  return h;
}

std::vector<std::uint8_t> make_frame(message_type type, std::uint32_t request_id,
                                     std::span<const std::uint8_t> payload) {
  std::vector<std::uint8_t> frame(header_size + payload.size());
  frame_header h;
  h.type = type;
  h.request_id = request_id;
  h.payload_size = static_cast<std::uint32_t>(payload.size());
  write_header(h, std::span<std::uint8_t, header_size>(frame.data(), header_size));
  if (!payload.empty()) std::memcpy(frame.data() + header_size, payload.data(), payload.size());
  return frame;
}

}  // namespace labhost::protocol
