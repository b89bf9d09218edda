#include "address.h"

#include <algorithm>

namespace labhost::protocol {

namespace {

constexpr std::string_view scheme = "lab://";

error bad(std::string_view text, std::string_view what) {
  return {errc::bad_address, "\"" + std::string(text) + "\": " + std::string(what)};
}

/// `hostport` is the part of `text` (quoted in errors) that names HOST:PORT; `expected` is
/// the whole form, for the message when there is no host or port at all.
result<endpoint> parse_host_port(std::string_view text, std::string_view hostport, port_zero zero,
                                 std::string_view expected) {
  endpoint a;
  std::string_view port;
  if (hostport.starts_with('[')) {
    auto close = hostport.find(']');
    if (close == std::string_view::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':')
      return bad(text, "expected [IPV6]:PORT");
    a.host = std::string(hostport.substr(1, close - 1));
    port = hostport.substr(close + 2);
  } else {
    auto colon = hostport.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return bad(text, std::string("expected ") + std::string(expected));
    a.host = std::string(hostport.substr(0, colon));
    port = hostport.substr(colon + 1);
    // "::1:7701" could end its address anywhere: IPv6 hosts go in brackets.
    if (a.host.find(':') != std::string::npos) return bad(text, "write an IPv6 host in brackets, [ADDRESS]:PORT");
  }
  if (a.host.empty()) return bad(text, "no host");
  const std::uint32_t lowest = zero == port_zero::allowed ? 0 : 1;
  const std::string range = "port must be " + std::to_string(lowest) + " to 65535";
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad(text, range);
  std::uint32_t number = 0;
  for (char c : port) number = number * 10 + static_cast<std::uint32_t>(c - '0');
  if (number < lowest || number > 65535) return bad(text, range);
  a.port = static_cast<std::uint16_t>(number);
  return a;
}

}  // namespace

std::string endpoint::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

result<endpoint> parse_endpoint(std::string_view text, port_zero zero) {
  return parse_host_port(text, text, zero, "HOST:PORT");
}

std::string service_location::to_string() const {
  return std::string(scheme) + daemon.to_string() + (service.empty() ? "" : "/" + service);
}

result<service_location> parse_service_address(std::string_view text) {
  constexpr std::string_view expected = "lab://HOST:PORT/SERVICE";
  std::string_view rest = text;
  if (rest.starts_with(scheme)) rest.remove_prefix(scheme.size());
  service_location a;
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    a.service = std::string(rest.substr(slash + 1));
    if (a.service.empty() || a.service.find('/') != std::string::npos)
      return bad(text, std::string("expected ") + std::string(expected));
  }
  auto daemon = parse_host_port(text, hostport, port_zero::refused, expected);
  if (!daemon) return daemon.err();
  a.daemon = std::move(*daemon);
  return a;
}

}  // namespace labhost::protocol
