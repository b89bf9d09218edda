#include "lan_announcer.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <avahi-client/client.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <avahi-common/thread-watch.h>
#include <avahi-common/timeval.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>

#include "../logging/log.h"

namespace labhost::naming {

namespace {

// A DNS-SD TXT string and a DNS label hold at most this many bytes (RFC 6763 6.1, RFC 1035).
constexpr std::size_t max_txt_string = 255;
constexpr std::size_t max_label = 63;

// Without D-Bus there is nothing to wait on: look again this often, so that a labhost started
// before the system bus (early boot) still announces once it is there.
constexpr unsigned retry_without_dbus_ms = 30'000;

/// The bound address, parsed: its family and bytes.
struct bound_address {
  int family = AF_UNSPEC;
  in_addr v4{};
  in6_addr v6{};

  static std::optional<bound_address> parse(const std::string& text) {
    bound_address a;
    if (::inet_pton(AF_INET, text.c_str(), &a.v4) == 1) a.family = AF_INET;
    else if (::inet_pton(AF_INET6, text.c_str(), &a.v6) == 1) a.family = AF_INET6;
    else return std::nullopt;
    return a;
  }
  bool loopback() const {
    if (family == AF_INET) return (ntohl(v4.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&v6) ||
           (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  bool unspecified() const {
    return family == AF_INET ? v4.s_addr == htonl(INADDR_ANY) : IN6_IS_ADDR_UNSPECIFIED(&v6);
  }
  bool held_by(const sockaddr* sa) const {
    if (sa == nullptr || sa->sa_family != family) return false;
    if (family == AF_INET) return reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr == v4.s_addr;
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, &v6, sizeof v6) == 0;
  }
};

/// The network interface that holds `address`: a daemon bound to one address is announced on
/// that interface only, so that a browser elsewhere never resolves an address it does not
/// listen on. Unknown (a host name's address that moved): every interface.
AvahiIfIndex interface_holding(const bound_address& address, std::string& name) {
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return AVAHI_IF_UNSPEC;
  AvahiIfIndex found = AVAHI_IF_UNSPEC;
  for (ifaddrs* i = all; i != nullptr; i = i->ifa_next) {
    if (!address.held_by(i->ifa_addr)) continue;
    if (unsigned index = ::if_nametoindex(i->ifa_name); index != 0) {
      found = static_cast<AvahiIfIndex>(index);
      name = i->ifa_name;
    }
    break;
  }
  ::freeifaddrs(all);
  return found;
}

}  // namespace

std::vector<std::string> lan_txt_records(const lan_announcement& what) {
  std::string services = "services=";
  bool all_fit = true;
  bool first = true;
  for (const auto& name : what.services) {
    std::string next = (first ? "" : ",") + name;
    if (services.size() + next.size() > max_txt_string) {
      all_fit = false;
      break;
    }
    services += next;
    first = false;
  }
  std::vector<std::string> txt{"daemon=" + what.daemon, services, "version=" + what.version,
                               std::string("tls=") + (what.tls ? "1" : "0"),
                               std::string("auth=") + (what.auth ? "1" : "0")};
  if (!all_fit) txt.push_back("more_services=1");
  return txt;
}

std::string lan_instance_name(const std::string& daemon, const std::string& host) {
  std::string name = daemon + " on " + host;
  if (name.size() <= max_label) return name;
  std::size_t cut = max_label;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
  return name.substr(0, cut);
}

/// Everything below runs on Avahi's thread (timeouts and callbacks of its threaded poll, which
/// hold the poll's lock), except the constructor (before the thread starts) and the destructor
/// (which asks that thread to withdraw, under the poll's lock, then stops it).
struct lan_announcer::avahi_side {
  lan_announcement what;
  std::vector<std::string> txt;
  AvahiIfIndex interface = AVAHI_IF_UNSPEC;
  AvahiProtocol protocol = AVAHI_PROTO_UNSPEC;
  std::string where;  // for the log: "port 7701 on eth0"

  AvahiThreadedPoll* poll = nullptr;
  AvahiTimeout* reconnect_timer = nullptr;
  AvahiClient* client = nullptr;
  AvahiEntryGroup* group = nullptr;
  std::string host;       // Avahi's host name the current instance name was made from
  std::string name;       // the instance name, after any collision
  bool told_off = false;  // "LAN discovery off" was logged: say it once, and say when it is on again

  std::promise<void>* withdrawn = nullptr;  // set by the destructor: withdraw, then fulfil it

  ~avahi_side() {
    if (poll == nullptr) return;
    // Withdrawn on Avahi's thread, like every other D-Bus call (libdbus's locks are then
    // always taken by one thread), and explicitly, so that the goodbye is asked for before the
    // daemon's port closes: freeing the client alone would leave it to avahi-daemon noticing
    // the closed D-Bus link.
    std::promise<void> done;
    avahi_threaded_poll_lock(poll);
    withdrawn = &done;
    reconnect_in(0);
    avahi_threaded_poll_unlock(poll);
    done.get_future().wait();
    avahi_threaded_poll_stop(poll);  // joins Avahi's thread
    avahi_threaded_poll_free(poll);  // and its timeout
  }

  void withdraw() {
    if (group != nullptr) avahi_entry_group_free(group);
    if (client != nullptr) avahi_client_free(client);
    group = nullptr;
    client = nullptr;
    withdrawn->set_value();
  }

  const AvahiPoll* api() { return avahi_threaded_poll_get(poll); }

  void reconnect_in(unsigned ms) {
    if (withdrawn != nullptr) ms = 0;  // stopping: nothing may put the withdrawal off
    timeval when;
    avahi_elapse_time(&when, ms, 0);
    api()->timeout_update(reconnect_timer, &when);
  }

  /// A new Avahi client. NO_FAIL: while avahi-daemon is not running the client waits for it
  /// (state CONNECTING) and goes on to RUNNING by itself when it starts.
  void connect() {
    if (client != nullptr) avahi_client_free(client);  // also frees the group: withdrawn, or gone with avahi-daemon
    client = nullptr;
    group = nullptr;
    int error = 0;
    client = avahi_client_new(api(), AVAHI_CLIENT_NO_FAIL, on_client_state, this, &error);
    if (client == nullptr) {
      // Avahi reports a missing bus as "Daemon not running": name the bus instead.
      const char* bus = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
      std::string why = std::string("the system D-Bus at ") +
                        (bus != nullptr && *bus != '\0' ? bus : "unix:path=/run/dbus/system_bus_socket") +
                        " cannot be reached";
      if (error != AVAHI_ERR_NO_DAEMON) why += std::string(": ") + avahi_strerror(error);
      say_off(why, "; trying again every 30 s");
      reconnect_in(retry_without_dbus_ms);
    }
  }

  void say_off(const std::string& why, const char* what_next) {
    if (told_off) {
      LABHOST_LOG(debug) << "LAN discovery still off: " << why;
      return;
    }
    told_off = true;
    LABHOST_LOG(info) << "LAN discovery off: no Avahi daemon (" << why << ")" << what_next;
  }

  static void on_client_state(AvahiClient* c, AvahiClientState state, void* userdata) {
    static_cast<avahi_side*>(userdata)->client_state(c, state);
  }

  // Called from within avahi_client_new too, before `client` is set: use `c`.
  void client_state(AvahiClient* c, AvahiClientState state) {
    switch (state) {
      case AVAHI_CLIENT_S_RUNNING:
        publish(c);
        break;
      case AVAHI_CLIENT_S_COLLISION:
      case AVAHI_CLIENT_S_REGISTERING:
        // Avahi is (re)establishing the host's own name: our records wait for it, and are
        // added again when it is RUNNING.
        if (group != nullptr) avahi_entry_group_reset(group);
        break;
      case AVAHI_CLIENT_CONNECTING:
        say_off("avahi-daemon is not running", "; announcing once it starts");
        break;
      case AVAHI_CLIENT_FAILURE: {
        int error = avahi_client_errno(c);
        if (error == AVAHI_ERR_DISCONNECTED) {
          // avahi-daemon (or the bus) went away: its records went with it. A new client
          // waits for it to come back; made outside this callback, which belongs to the old one.
          LABHOST_LOG(info) << "LAN discovery: avahi-daemon went away; announcing again once it is back";
          told_off = true;
          reconnect_in(0);
        } else {
          LABHOST_LOG(warning) << "LAN discovery: the Avahi client failed (" << avahi_strerror(error)
                               << "); trying again in 30 s";
          reconnect_in(retry_without_dbus_ms);
        }
        break;
      }
    }
  }

  void publish(AvahiClient* c) {
    const char* avahi_host = avahi_client_get_host_name(c);
    std::string current_host = avahi_host != nullptr ? avahi_host : "";
    if (name.empty() || current_host != host) {
      host = current_host;
      name = lan_instance_name(what.daemon, host);
    }
    if (group == nullptr) {
      group = avahi_entry_group_new(c, on_group_state, this);
      if (group == nullptr) {
        LABHOST_LOG(warning) << "LAN discovery: cannot announce (" << avahi_strerror(avahi_client_errno(c)) << ")";
        return;
      }
    }
    if (!avahi_entry_group_is_empty(group)) return;  // announced already
    AvahiStringList* records = nullptr;
    for (auto it = txt.rbegin(); it != txt.rend(); ++it)  // avahi_string_list_add prepends
      records = avahi_string_list_add(records, it->c_str());
    int result = 0;
    // A name another labhost of this machine announces already (two hosts on one PC, both
    // with a daemon "main") is refused at once: take the next alternative, "main on pc #2".
    for (int tries = 0; tries < 20; ++tries) {
      result = avahi_entry_group_add_service_strlst(group, interface, protocol, AvahiPublishFlags(0), name.c_str(),
                                                    lan_service_type, nullptr, nullptr, what.port, records);
      if (result != AVAHI_ERR_COLLISION) break;
      take_alternative_name("on this machine");
    }
    avahi_string_list_free(records);
    if (result >= 0) result = avahi_entry_group_commit(group);
    if (result < 0)
      LABHOST_LOG(warning) << "LAN discovery: cannot announce \"" << name << "\": " << avahi_strerror(result);
  }

  void take_alternative_name(const char* where_taken) {
    char* next = avahi_alternative_service_name(name.c_str());
    LABHOST_LOG(info) << "LAN discovery: the name \"" << name << "\" is taken " << where_taken << "; announcing as \""
                      << next << "\"";
    name = next;
    avahi_free(next);
  }

  static void on_group_state(AvahiEntryGroup* g, AvahiEntryGroupState state, void* userdata) {
    static_cast<avahi_side*>(userdata)->group_state(g, state);
  }

  void group_state(AvahiEntryGroup* g, AvahiEntryGroupState state) {
    switch (state) {
      case AVAHI_ENTRY_GROUP_ESTABLISHED:
        LABHOST_LOG(info) << (told_off ? "LAN discovery on: " : "") << "announced on the LAN as \"" << name << "\" ("
                          << lan_service_type << ", " << where << ")";
        told_off = false;
        break;
      case AVAHI_ENTRY_GROUP_COLLISION:
        // Another machine on the LAN announces this name: probing lost, so take the next one.
        take_alternative_name("on the network");
        avahi_entry_group_reset(g);
        publish(avahi_entry_group_get_client(g));
        break;
      case AVAHI_ENTRY_GROUP_FAILURE:
        LABHOST_LOG(warning) << "LAN discovery: announcing \"" << name << "\" failed: "
                             << avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(g)));
        break;
      case AVAHI_ENTRY_GROUP_UNCOMMITED:
      case AVAHI_ENTRY_GROUP_REGISTERING:
        break;
    }
  }

  static void on_reconnect_timer(AvahiTimeout*, void* userdata) {
    auto* self = static_cast<avahi_side*>(userdata);
    if (self->withdrawn != nullptr) self->withdraw();
    else self->connect();
  }
};

lan_announcer::lan_announcer(lan_announcement what) {
  auto address = bound_address::parse(what.listen_ip);
  if (address && address->loopback()) {
    LABHOST_LOG(debug) << "LAN discovery: daemon " << what.daemon << " listens on loopback only (" << what.listen_ip
                       << "): not announced, the LAN cannot reach it";
    return;
  }
  auto side = std::make_unique<avahi_side>();
  side->where = "port " + std::to_string(what.port);
  if (address && !address->unspecified()) {
    std::string interface_name;
    side->interface = interface_holding(*address, interface_name);
    if (side->interface != AVAHI_IF_UNSPEC) side->where += " on " + interface_name;
  }
  // An IPv4 socket is announced over IPv4 only, so that browsers resolve an address it serves.
  if (address && address->family == AF_INET) side->protocol = AVAHI_PROTO_INET;
  else if (address && !address->unspecified()) side->protocol = AVAHI_PROTO_INET6;
  side->txt = lan_txt_records(what);
  side->what = std::move(what);
  side->poll = avahi_threaded_poll_new();
  if (side->poll == nullptr) {
    LABHOST_LOG(warning) << "LAN discovery off: cannot start Avahi's event loop";
    return;
  }
  // The first client is made on Avahi's thread too: connecting to D-Bus can block.
  timeval now;
  avahi_elapse_time(&now, 0, 0);
  side->reconnect_timer = side->api()->timeout_new(side->api(), &now, avahi_side::on_reconnect_timer, side.get());
  if (side->reconnect_timer == nullptr || avahi_threaded_poll_start(side->poll) < 0) {
    LABHOST_LOG(warning) << "LAN discovery off: cannot start Avahi's thread";
    avahi_threaded_poll_free(side->poll);
    side->poll = nullptr;
    return;
  }
  avahi_ = std::move(side);
}

lan_announcer::~lan_announcer() = default;

}  // namespace labhost::naming
