// session_info.h: who a session is, as services see it (for locks and session instances).
#ifndef LABHOST_SERVICE_SESSION_INFO_H
#define LABHOST_SERVICE_SESSION_INFO_H

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace labhost::service {

struct session_info {
  std::string token;        // server-issued, unguessable; the session's identity
  std::string client_name;  // "user@host" or what the client set
  std::int64_t pid = 0;     // the client's process id, as it said
  std::string address;      // the peer address of its (latest) connection
  std::string certificate;  // subject of its TLS client certificate; empty without one
};

/// A held lock: who holds it and since when.
struct lock_holder {
  session_info holder;
  std::chrono::system_clock::time_point since;
};

/// "ana@lab-pc (pid 4242, 127.0.0.1:53122) since 2026-11-27 19:03:12 UTC"
std::string describe_holder(const lock_holder& lock);

/// Compares two secrets in time that does not depend on where they differ.
bool secrets_equal(std::string_view given, std::string_view expected) noexcept;

}  // namespace labhost::service

#endif  // LABHOST_SERVICE_SESSION_INFO_H
