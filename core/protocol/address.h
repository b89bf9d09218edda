// address.h: the one parser of addresses, for host.json (listen, register_with), the command
// line and the client library: "HOST:PORT" endpoints and "lab://HOST:PORT[/SERVICE]" service
// addresses (tests/vectors/addresses.json). No I/O: names are not resolved here.
#ifndef LABHOST_PROTOCOL_ADDRESS_H
#define LABHOST_PROTOCOL_ADDRESS_H

#include <cstdint>
#include <string>
#include <string_view>

#include "labhost/errors.h"

namespace labhost::protocol {

/// A host and a port: IPv4 "127.0.0.1:7701", IPv6 "[::1]:7701", or a name "labpc:7701".
struct endpoint {
  std::string host;  // without brackets
  std::uint16_t port = 0;
  /// "HOST:PORT", an IPv6 host in brackets.
  std::string to_string() const;
};

/// Whether port 0 may be written: only where it means "pick a free port" (listen addresses).
enum class port_zero { refused, allowed };

/// Parses "HOST:PORT" or "[IPV6]:PORT": a non-empty host (an IPv6 one in brackets) and a port
/// of decimal digits, 1 to 65535 (0 too when `zero` allows it). Errors: bad_address, saying
/// what was expected.
result<endpoint> parse_endpoint(std::string_view text, port_zero zero = port_zero::refused);

/// A service (or daemon) address.
struct service_location {
  endpoint daemon;
  std::string service;  // empty when the address names a daemon
  /// "lab://HOST:PORT/SERVICE", or "lab://HOST:PORT" for a daemon.
  std::string to_string() const;
};

/// Parses "lab://HOST:PORT/SERVICE", "lab://HOST:PORT", or either without "lab://". A
/// service name is not empty and has no '/'. Errors: bad_address.
result<service_location> parse_service_address(std::string_view text);

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_ADDRESS_H
