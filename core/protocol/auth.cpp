#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace labhost::protocol {
namespace {

std::vector<std::uint8_t> hmac(std::string_view secret, std::string_view label,
                               std::span<const std::uint8_t> first, std::span<const std::uint8_t> second) {
  std::vector<std::uint8_t> message(label.begin(), label.end());
  message.insert(message.end(), first.begin(), first.end());
  message.insert(message.end(), second.begin(), second.end());
  std::vector<std::uint8_t> mac(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), message.data(), message.size(),
           mac.data(), &length) == nullptr)
    throw std::runtime_error("HMAC-SHA256 failed");
  mac.resize(length);
  return mac;
}

}  // namespace

std::vector<std::uint8_t> random_nonce() {
  std::vector<std::uint8_t> nonce(nonce_size);
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1)
    throw std::runtime_error("no random bytes for a nonce");
  return nonce;
}

std::vector<std::uint8_t> server_proof(std::string_view secret, std::span<const std::uint8_t> client_nonce,
                                       std::span<const std::uint8_t> server_nonce) {
  return hmac(secret, "labhost-server", client_nonce, server_nonce);
}

std::vector<std::uint8_t> client_proof(std::string_view secret, std::span<const std::uint8_t> server_nonce,
                                       std::span<const std::uint8_t> client_nonce) {
  return hmac(secret, "labhost-client", server_nonce, client_nonce);
}

bool proofs_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace labhost::protocol
