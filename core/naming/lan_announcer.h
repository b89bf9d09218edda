// lan_announcer.h: announces one daemon on the local network through DNS-SD (mDNS), as
// LXI instruments announce themselves, so that `labctl ls --lan` and labhost.discover() find it
// without any configuration (docs/operations.md, "LAN discovery").
//
// The daemon publishes one service of type _labhost._tcp on its port, named "DAEMON on HOST"
// (HOST: the name Avahi gives this machine on the LAN), with TXT records daemon=, services=,
// version=, tls= and auth=. It goes through the Avahi daemon of the machine (libavahi-client,
// over the system D-Bus), on Avahi's own thread (a threaded poll): the D-Bus calls never run on
// the daemon's threads, so a slow or missing Avahi cannot hold the daemon up.
//
// Announcing is best effort. Without an Avahi daemon (no system D-Bus, avahi-daemon not
// running) the announcer logs one info line ("LAN discovery off: no Avahi daemon (...)") and
// waits: it announces as soon as avahi-daemon starts (or, without D-Bus, within 30 s of D-Bus
// appearing), and again after avahi-daemon restarts. A daemon that listens on loopback only
// cannot be reached from the LAN: nothing is announced (said at debug level).
//
// Thread-safety: the constructor and destructor are called from one thread; every Avahi and
// D-Bus call runs on Avahi's thread, which the announcer owns. Lifetime: the service is
// announced while the lan_announcer lives; the destructor has it withdrawn (Avahi sends
// goodbye packets, so browsers drop it within a second) and returns once Avahi's thread has
// ended (at once, unless avahi-daemon hangs: D-Bus calls give up after 25 s).
#ifndef LABHOST_NAMING_LAN_ANNOUNCER_H
#define LABHOST_NAMING_LAN_ANNOUNCER_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace labhost::naming {

/// The DNS-SD service type of labhost daemons (RFC 6763: _SERVICE._PROTO).
inline constexpr const char* lan_service_type = "_labhost._tcp";

/// What a daemon says about itself on the LAN.
struct lan_announcement {
  std::string daemon;                 // the daemon's name in host.json, "main"
  std::vector<std::string> services;  // its services' names, in host.json's order
  std::string version;                // the labhost version serving them
  bool tls = false;                   // clients must speak TLS
  bool auth = false;                  // clients must prove they know the host's secret
  std::string listen_ip;              // the address the daemon is bound to: "0.0.0.0", "::", "10.0.0.5"
  std::uint16_t port = 0;             // its bound port
};

/// The TXT record strings of an announcement ("daemon=main", "services=laser,stage", ...). A
/// DNS-SD string holds at most 255 bytes: a services list longer than that keeps the names
/// that fit, whole, and "more_services=1" says some are left out (`labctl describe` lists them).
std::vector<std::string> lan_txt_records(const lan_announcement& what);

/// "DAEMON on HOST", cut to the 63 bytes a DNS label holds.
std::string lan_instance_name(const std::string& daemon, const std::string& host);

class lan_announcer {
 public:
  /// Starts announcing and returns at once; Avahi's thread does the rest (see above).
  explicit lan_announcer(lan_announcement what);
  /// Withdraws the service and ends Avahi's thread.
  ~lan_announcer();
  lan_announcer(const lan_announcer&) = delete;
  lan_announcer& operator=(const lan_announcer&) = delete;

 private:
  struct avahi_side;  // the Avahi objects, in lan_announcer.cpp (keeps Avahi's headers there)
  std::unique_ptr<avahi_side> avahi_;  // null when nothing is announced (loopback)
};

}  // namespace labhost::naming

#endif  // LABHOST_NAMING_LAN_ANNOUNCER_H
