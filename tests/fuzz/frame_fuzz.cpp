// libFuzzer target: a frame as a daemon receives it: header, payload, message.
#include <cstddef>
#include <cstdint>
#include <span>

#include "protocol/frame.h"
#include "protocol/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace labhost::protocol;
  if (size < header_size) return 0;
  auto header = parse_header(std::span<const std::uint8_t, header_size>(data, header_size), 1u << 20);
  if (!header) return 0;
  std::span<const std::uint8_t> payload(data + header_size, size - header_size);
  if (payload.size() > header->payload_size) payload = payload.first(header->payload_size);
  auto decoded = decode_payload(payload);
  if (!decoded) return 0;
  // Every message parser must take any value without throwing.
  (void)parse_hello(*decoded);
  (void)parse_welcome(*decoded);
  (void)parse_challenge(*decoded);
  (void)parse_authenticate(*decoded);
  (void)parse_call(labhost::value(*decoded));
  (void)parse_describe(*decoded);
  (void)parse_lock(*decoded);
  (void)parse_unlock(*decoded);
  (void)parse_lock_status(*decoded);
  (void)parse_lock_report(*decoded);
  (void)parse_error(*decoded);
  (void)parse_service_description(*decoded);
  (void)parse_daemon_description(*decoded);
  return 0;
}
