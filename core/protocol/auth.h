// auth.h: the shared-secret challenge-response of the handshake (docs/security.md).
//
// Both sides pick a fresh random nonce; each proves it knows the secret with an HMAC-SHA256
// over both nonces, so a recorded exchange is worthless on a new connection (the other
// side's nonce differs). The secret itself never travels.
#ifndef LABHOST_PROTOCOL_AUTH_H
#define LABHOST_PROTOCOL_AUTH_H

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace labhost::protocol {

constexpr std::size_t nonce_size = 32;

/// nonce_size bytes from the operating system's random source.
std::vector<std::uint8_t> random_nonce();

/// What the daemon sends to prove it knows the secret: HMAC(secret, "labhost-server" ||
/// client_nonce || server_nonce).
std::vector<std::uint8_t> server_proof(std::string_view secret, std::span<const std::uint8_t> client_nonce,
                                       std::span<const std::uint8_t> server_nonce);
/// What the client sends: HMAC(secret, "labhost-client" || server_nonce || client_nonce).
std::vector<std::uint8_t> client_proof(std::string_view secret, std::span<const std::uint8_t> server_nonce,
                                       std::span<const std::uint8_t> client_nonce);
/// Compares two proofs in constant time.
bool proofs_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_AUTH_H
