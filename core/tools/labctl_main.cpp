// labctl: the command line client. describe, call and ping a daemon or service.
#include <boost/json/parse.hpp>
#include <algorithm>
#include <csignal>
#include <ctime>
#include <iostream>
#include <map>
#include <string>
#include <tuple>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/simple-watch.h>
#include <avahi-common/strlst.h>
#include <avahi-common/timeval.h>
#include <net/if.h>

#include "command_line.h"
#include "labhost/client.h"
#include "naming/lan_announcer.h"
#include "protocol/address.h"
#include "protocol/json_value.h"
#include "protocol/messages.h"
#include "protocol/secret_file.h"
#include "stop_signals.h"

namespace {

using namespace labhost;
using tools::block_stop_signals;
using tools::command_line;
using tools::usage_error;

constexpr const char* usage_text =
    "usage: labctl [--json] [--timeout SECONDS] [--client-name NAME] [--ns HOST:PORT]\n"
    "              [--secret-file FILE] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]\n"
    "              COMMAND ...\n"
    "The secret for daemons that require one: --secret-file, else $LABHOST_SECRET, else the\n"
    "file $LABHOST_SECRET_FILE.\n"
    "TLS, for daemons that serve it: --tls-ca (the CA that signed the daemon's certificate),\n"
    "else $LABHOST_TLS_CA; for daemons that verify clients also --tls-cert and --tls-key, else\n"
    "$LABHOST_TLS_CERT and $LABHOST_TLS_KEY.\n"
    "ADDRESS is lab://HOST:PORT[/SERVICE], or a service name looked up on the nameserver\n"
    "(--ns, else $LABHOST_NS, else 127.0.0.1:7700).\n"
    "  ls [PREFIX]                              the names registered on the nameserver\n"
    "  ls --lan [--wait SECONDS]                the daemons that announce themselves on the LAN\n"
    "                                           (DNS-SD _labhost._tcp, through this machine's\n"
    "                                           avahi-daemon), found within SECONDS (2 by default)\n"
    "  describe lab://HOST:PORT[/SERVICE]       the daemon's services, or a service's methods\n"
    "  call lab://HOST:PORT/SERVICE METHOD [ARG...]\n"
    "                                           call a method; each ARG is a JSON literal\n"
    "                                           (1550.5, true, \"text\", [1,2]) or name=JSON for a\n"
    "                                           keyword argument; a word that is not JSON is a string\n"
    "  ping lab://HOST:PORT                     round trip to a daemon\n"
    "  lock lab://HOST:PORT/SERVICE --hold [--wait SECONDS]\n"
    "                                           take the lock, print one line, hold it until\n"
    "                                           terminated (SIGINT/SIGTERM unlock and exit 0);\n"
    "                                           says so and exits 1 if the lock is taken away\n"
    "  unlock lab://HOST:PORT/SERVICE [--force --admin-secret-file FILE]\n"
    "                                           release a lock (--force: anyone's, as admin)\n"
    "  locks lab://HOST:PORT[/SERVICE]          who holds which lock\n"
    "  watch lab://HOST:PORT/SERVICE TOPIC [--count N] [--max-rate PER_SECOND] [--queue N]\n"
    "                                           print the topic's events as they come (one line\n"
    "                                           each; --json: one JSON object each) until N events\n"
    "                                           or SIGINT/SIGTERM\n"
    "  call ... --oneway                        send the call and wait for nothing\n"
    "On failure the exit status is 1 and the typed error's name is printed.\n";

// Human output shows at most this many elements of a typed array; --json shows all.
constexpr std::size_t human_array_elements = 16;

value parse_argument(const std::string& text) {
  boost::system::error_code ec;
  auto json = boost::json::parse(text, ec);
  if (ec) return text;  // `labctl call ... set_mode fast`: a bare word is a string
  return protocol::json_to_value(json);
}

bool is_keyword(const std::string& arg, std::string& name, std::string& rest) {
  auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  for (std::size_t i = 0; i < eq; ++i) {
    char c = arg[i];
    bool ok = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  name = arg.substr(0, eq);
  rest = arg.substr(eq + 1);
  return true;
}

/// The secret in a file named on the command line (the rule every secret file follows).
std::string secret_in(const std::string& file, const std::string& option) {
  auto secret = protocol::read_secret_file(file);
  if (!secret) throw usage_error(option + ": " + secret.err().message);
  return std::move(*secret);
}

/// Client options from the command line (--client-name, --timeout, --secret-file, --tls-*).
client_options options_from(const command_line& cl) {
  client_options options;
  options.client_name = cl.get("client-name", "");
  options.timeout = std::chrono::milliseconds(static_cast<long long>(cl.seconds("timeout", 0) * 1000));
  if (auto file = cl.get("secret-file")) options.secret = secret_in(*file, "--secret-file");
  options.tls_ca_file = cl.get("tls-ca", "");
  options.tls_cert_file = cl.get("tls-cert", "");
  options.tls_key_file = cl.get("tls-key", "");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty())
    throw usage_error("--tls-cert and --tls-key go together");
  return options;
}

std::shared_ptr<client> open_client(const service_address& address, const command_line& cl) {
  return client::connect(address.host, address.port, options_from(cl));
}

std::string format_since(double unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm utc{};
  ::gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

value lock_to_value(const lock_info& l) {
  protocol::lock_report r{l.service, l.locked, l.yours, l.holder_name, l.holder_pid,
                          l.holder_address, l.since, l.lease_left_ms};
  return protocol::to_value(r);
}

void print_lock(const lock_info& l) {
  if (!l.locked) {
    std::cout << l.service << ": free\n";
    return;
  }
  std::cout << l.service << ": locked by " << l.holder_name << " (pid " << l.holder_pid << ", "
            << l.holder_address << ") since " << format_since(l.since) << ", lease left "
            << l.lease_left_ms << " ms" << (l.yours ? " (you)" : "") << "\n";
}

/// Takes the lock and keeps the session alive (heartbeats) until SIGINT/SIGTERM.
int hold_lock(const service_address& address, const command_line& cl) {
  const sigset_t stop_signals = block_stop_signals();
  auto wait = std::chrono::milliseconds(static_cast<long long>(cl.seconds("wait", 0) * 1000));
  auto c = open_client(address, cl);
  auto l = c->lock(address.service, wait);
  std::cout << "locked " << address.to_string() << " as " << l.holder_name << "; holding until terminated"
            << std::endl;
  // Wait for a signal, and look once a second whether the lock is still ours: an
  // administrator may release it (force unlock), or the session may end. Without an answer for
  // a whole lease (the daemon's host lost power, the network broke), the daemon has ended the
  // session, and the lock with it.
  const timespec period{1, 0};
  auto last_answer = std::chrono::steady_clock::now();
  while (sigtimedwait(&stop_signals, nullptr, &period) < 0) {
    std::string lost;
    try {
      auto status = c->lock_status(address.service).at(0);
      last_answer = std::chrono::steady_clock::now();
      if (!status.yours)
        lost = status.locked ? "it is held by " + status.holder_name + " now" : "it is free now";
    } catch (const remote_error& e) {
      if (e.get().code != errc::connection_lost && e.get().code != errc::timeout) lost = e.what();
      // connection_lost: the client reconnects and resumes the session; look again later
      else if (std::chrono::steady_clock::now() - last_answer > c->lease())
        lost = "no answer from the daemon for its lease (" + std::to_string(c->lease().count()) + " ms): " + e.message();
    }
    if (!lost.empty()) {
      std::cerr << "labctl: lost the lock on " << address.to_string()
                << " (released by an administrator, or the session ended): " << lost << std::endl;
      c->close();
      return 1;
    }
  }
  try {
    c->unlock(address.service);
  } catch (const remote_error&) {
    // lost meanwhile (forced, or the session ended): closing is all that is left
  }
  c->close();
  return 0;
}

void print_service(const service_description& s) {
  std::cout << s.name << " (" << s.driver << " " << s.driver_version << ", " << s.state << ")";
  if (!s.reason.empty()) std::cout << ": " << s.reason;
  std::cout << "\n";
  if (!s.description.empty()) std::cout << "  " << s.description << "\n";
  for (const auto& m : s.methods) {
    std::string params;
    for (const auto& p : m.params) params += (params.empty() ? "" : ", ") + p.name + ": " + p.type;
    std::cout << "  " << m.name << "(" << params << ") -> " << m.returns << (m.oneway ? "  [oneway]" : "") << "\n";
    if (!m.doc.empty()) std::cout << "      " << m.doc << "\n";
  }
  for (const auto& t : s.topics) {
    std::cout << "  topic " << t.name << ": " << t.type << "\n";
    if (!t.doc.empty()) std::cout << "      " << t.doc << "\n";
  }
}

/// Prints a topic's events until --count of them came, or a stop signal.
int watch(const service_address& address, const std::string& topic, const command_line& cl) {
  const sigset_t stop_signals = block_stop_signals();
  subscribe_options options;
  options.queue = static_cast<std::size_t>(cl.whole_number("queue", 16, 1, 1024));
  options.max_rate = cl.number("max-rate", 0, "events per second (0 or more)");
  const long long count = cl.whole_number("count", 0, 0, std::numeric_limits<long long>::max());
  const bool json = cl.flag("json");
  auto c = open_client(address, cl);
  auto events = c->subscribe(address.service, topic, options);
  long long seen = 0;
  const timespec no_wait{0, 0};
  while ((count == 0 || seen < count) && sigtimedwait(&stop_signals, nullptr, &no_wait) < 0) {
    auto e = events->next(std::chrono::milliseconds(200));
    if (!e) continue;
    ++seen;
    const std::string text = protocol::to_json_text(e->data, json ? std::numeric_limits<std::size_t>::max()
                                                                  : human_array_elements);
    if (json) {
      std::cout << "{\"seq\":" << e->seq << ",\"dropped\":" << e->dropped << ",\"time\":"
                << protocol::to_json_text(e->time) << ",\"value\":" << text << "}" << std::endl;
    } else {
      std::cout << "#" << e->seq << " " << format_since(e->time) << "  " << text;
      if (e->dropped > 0) std::cout << "  (" << e->dropped << " dropped before it)";
      std::cout << std::endl;
    }
  }
  events->unsubscribe();
  c->close();
  return 0;
}

/// lab://HOST:PORT[/SERVICE] or HOST:PORT[/SERVICE] as given; any other word is a name.
service_address resolve(const std::string& word, const command_line& cl) {
  bool looks_like_address = word.starts_with("lab://") || word.find(':') != std::string::npos;
  if (looks_like_address) return service_address::parse(word);
  std::string nameserver = cl.get("ns", default_nameserver());
  try {
    return resolve_name(word, nameserver, options_from(cl));
  } catch (const remote_error& e) {
    if (e.code() != errc::connection_lost) throw;
    throw remote_error(error{errc::connection_lost, "cannot reach the nameserver " + nameserver +
                                                        " to look up \"" + word + "\": " + e.message()});
  }
}

int list_registered(const command_line& cl) {
  const auto& words = cl.positional();
  auto names = list_names(cl.get("ns", ""), words.empty() ? "" : words[0], options_from(cl));
  if (cl.flag("json")) {
    list all;
    for (const auto& n : names)
      all.push_back(map{{"name", n.name}, {"address", n.address}, {"metadata", n.metadata}, {"owner", n.owner}});
    std::cout << protocol::to_json_text(all) << "\n";
    return 0;
  }
  for (const auto& n : names) {
    const value* description = n.metadata.find("description");
    std::cout << n.name << "  " << n.address;
    if (description && description->is_string() && !description->as_string().empty())
      std::cout << "  " << description->as_string();
    std::cout << "\n";
  }
  return 0;
}

/// One daemon found on the LAN: its DNS-SD instance, where it answers, and its TXT records.
struct lan_daemon {
  std::string name;       // the instance name, "main on labpc"
  std::string host;       // the host's mDNS name, "labpc.local"
  std::string address;    // "192.168.1.20", or an IPv6 address ("fe80::1%eth0")
  std::uint16_t port = 0;
  std::string interface;  // where it was seen, "eth0"
  bool ipv4 = false;
  std::string daemon;     // TXT daemon=
  std::vector<std::string> services;  // TXT services=, split at commas
  bool more_services = false;         // TXT more_services=1: the list did not fit
  std::string version;
  bool tls = false;
  bool auth = false;

  std::string endpoint() const { return protocol::endpoint{address, port}.to_string(); }
};

/// Browses _labhost._tcp through this machine's avahi-daemon for `wait`, resolving each
/// instance found. One entry per instance name (seen on several interfaces or over IPv4 and
/// IPv6, it keeps an IPv4 address). Throws std::runtime_error when there is no avahi-daemon.
class lan_browse {
 public:
  explicit lan_browse(std::chrono::milliseconds wait) : poll_(avahi_simple_poll_new(), avahi_simple_poll_free) {
    if (poll_ == nullptr) throw std::runtime_error("ls --lan: cannot set up Avahi's event loop");
    int error = 0;
    client_.reset(avahi_client_new(avahi_simple_poll_get(poll_.get()), AvahiClientFlags(0), on_client_state, this,
                                   &error));
    if (client_ == nullptr)
      throw std::runtime_error(std::string("ls --lan: no Avahi daemon on this machine (") + avahi_strerror(error) +
                               "): it asks avahi-daemon, which is not running or not installed (apt-get install "
                               "avahi-daemon); Python's labhost.discover() needs none");
    // Freed with the client, as are the resolvers.
    if (!avahi_service_browser_new(client_.get(), AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, naming::lan_service_type,
                                   nullptr, AvahiLookupFlags(0), on_browse, this))
      throw std::runtime_error(std::string("ls --lan: Avahi cannot browse: ") +
                               avahi_strerror(avahi_client_errno(client_.get())));
    timeval deadline;
    avahi_elapse_time(&deadline, static_cast<unsigned>(wait.count()), 0);
    const AvahiPoll* api = avahi_simple_poll_get(poll_.get());
    api->timeout_new(api, &deadline, [](AvahiTimeout*, void* poll) {
      avahi_simple_poll_quit(static_cast<AvahiSimplePoll*>(poll));
    }, poll_.get());  // freed with the poll
    avahi_simple_poll_loop(poll_.get());
    if (!failure_.empty()) throw std::runtime_error("ls --lan: " + failure_);
  }

  /// What was found, by instance name.
  std::vector<lan_daemon> found() const {
    std::map<std::string, lan_daemon> by_name;
    for (const auto& [where, d] : resolved_) {
      auto [it, fresh] = by_name.emplace(d.name, d);
      if (!fresh && d.ipv4 && !it->second.ipv4) it->second = d;
    }
    std::vector<lan_daemon> out;
    for (auto& [name, d] : by_name) out.push_back(std::move(d));
    return out;
  }

 private:
  // An instance as Avahi reports it: on one interface, over one protocol.
  using instance_key = std::tuple<AvahiIfIndex, AvahiProtocol, std::string>;

  static void on_client_state(AvahiClient* c, AvahiClientState state, void* userdata) {
    auto* self = static_cast<lan_browse*>(userdata);
    if (state == AVAHI_CLIENT_FAILURE) self->fail(std::string("avahi-daemon: ") + avahi_strerror(avahi_client_errno(c)));
  }

  static void on_browse(AvahiServiceBrowser*, AvahiIfIndex interface, AvahiProtocol protocol, AvahiBrowserEvent event,
                        const char* name, const char* type, const char* domain, AvahiLookupResultFlags, void* userdata) {
    auto* self = static_cast<lan_browse*>(userdata);
    switch (event) {
      case AVAHI_BROWSER_NEW:
        // Freed when it answers (on_resolved), or with the client. The address is asked over
        // the protocol the instance was seen on: a daemon bound to IPv4 only is announced over
        // IPv4 only, and its host's IPv6 addresses would not reach it.
        if (!avahi_service_resolver_new(self->client_.get(), interface, protocol, name, type, domain, protocol,
                                        AvahiLookupFlags(0), on_resolved, self))
          self->fail(std::string("cannot resolve \"") + name + "\": " +
                     avahi_strerror(avahi_client_errno(self->client_.get())));
        break;
      case AVAHI_BROWSER_REMOVE:  // withdrawn meanwhile (goodbye packets)
        self->resolved_.erase(instance_key{interface, protocol, name});
        break;
      case AVAHI_BROWSER_FAILURE:
        self->fail(std::string("browsing failed: ") + avahi_strerror(avahi_client_errno(self->client_.get())));
        break;
      case AVAHI_BROWSER_ALL_FOR_NOW:
      case AVAHI_BROWSER_CACHE_EXHAUSTED:
        break;  // more may come within the wait
    }
  }

  static void on_resolved(AvahiServiceResolver* resolver, AvahiIfIndex interface, AvahiProtocol protocol,
                          AvahiResolverEvent event, const char* name, const char*, const char*, const char* host,
                          const AvahiAddress* address, std::uint16_t port, AvahiStringList* txt,
                          AvahiLookupResultFlags, void* userdata) {
    auto* self = static_cast<lan_browse*>(userdata);
    if (event == AVAHI_RESOLVER_FOUND && address != nullptr) {
      lan_daemon d;
      d.name = name;
      d.host = host != nullptr ? host : "";
      char text[AVAHI_ADDRESS_STR_MAX];
      avahi_address_snprint(text, sizeof text, address);
      d.address = text;
      d.ipv4 = address->proto == AVAHI_PROTO_INET;
      d.port = port;
      char interface_name[IF_NAMESIZE] = {};
      if (interface >= 0 && ::if_indextoname(static_cast<unsigned>(interface), interface_name)) {
        d.interface = interface_name;
        // A link-local IPv6 address means nothing without its interface.
        if (!d.ipv4 && d.address.starts_with("fe80:")) d.address += std::string("%") + interface_name;
      }
      for (AvahiStringList* i = txt; i != nullptr; i = avahi_string_list_get_next(i)) {
        char* k = nullptr;
        char* v = nullptr;
        if (avahi_string_list_get_pair(i, &k, &v, nullptr) < 0) continue;
        std::string item_key = k, value = v != nullptr ? v : "";
        avahi_free(k);
        avahi_free(v);
        if (item_key == "daemon") d.daemon = value;
        else if (item_key == "version") d.version = value;
        else if (item_key == "tls") d.tls = value == "1";
        else if (item_key == "auth") d.auth = value == "1";
        else if (item_key == "more_services") d.more_services = value == "1";
        else if (item_key == "services")
          for (std::size_t start = 0; start < value.size();) {
            auto comma = std::min(value.find(',', start), value.size());
            if (comma > start) d.services.push_back(value.substr(start, comma - start));
            start = comma + 1;
          }
      }
      self->resolved_[instance_key{interface, protocol, name}] = std::move(d);
    }
    // A failure (a stale cache entry whose host does not answer) leaves the instance out.
    avahi_service_resolver_free(resolver);
  }

  void fail(std::string why) {
    if (failure_.empty()) failure_ = std::move(why);
    avahi_simple_poll_quit(poll_.get());
  }

  // The client goes before its poll (members are destroyed in reverse order).
  std::unique_ptr<AvahiSimplePoll, decltype(&avahi_simple_poll_free)> poll_{nullptr, avahi_simple_poll_free};
  std::unique_ptr<AvahiClient, decltype(&avahi_client_free)> client_{nullptr, avahi_client_free};
  std::map<instance_key, lan_daemon> resolved_;
  std::string failure_;
};

int list_lan(const command_line& cl) {
  if (!cl.positional().empty()) throw usage_error("ls --lan takes no PREFIX");
  auto wait = std::chrono::milliseconds(static_cast<long long>(cl.seconds("wait", 2.0) * 1000));
  auto daemons = lan_browse(wait).found();
  if (cl.flag("json")) {
    list all;
    for (const auto& d : daemons) {
      list services(d.services.begin(), d.services.end());
      all.push_back(map{{"name", d.name}, {"host", d.host}, {"address", d.address},
                        {"port", static_cast<std::int64_t>(d.port)}, {"interface", d.interface}, {"daemon", d.daemon},
                        {"services", services}, {"more_services", d.more_services}, {"version", d.version},
                        {"tls", d.tls}, {"auth", d.auth}});
    }
    std::cout << protocol::to_json_text(all) << "\n";
    return 0;
  }
  for (const auto& d : daemons) {
    std::string services;
    for (const auto& s : d.services) services += (services.empty() ? "" : ",") + s;
    if (d.more_services) services += ",...";
    std::cout << d.name << "  " << d.host << "  " << d.endpoint() << "  " << (services.empty() ? "-" : services);
    if (d.tls) std::cout << "  TLS";
    if (d.auth) std::cout << "  secret";
    std::cout << "\n";
  }
  return 0;
}

int run(const std::string& command, const command_line& cl) {
  if (command == "ls") return cl.flag("lan") ? list_lan(cl) : list_registered(cl);
  const auto& words = cl.positional();
  const bool json = cl.flag("json");
  if (words.empty()) throw usage_error(command + " needs an address");
  auto address = resolve(words[0], cl);

  if (command == "ping") {
    if (words.size() != 1) throw usage_error("ping takes one address");
    auto c = open_client(address, cl);
    auto rtt = c->ping();
    if (json)
      std::cout << "{\"daemon\":\"" << c->daemon_name() << "\",\"rtt_us\":" << rtt.count() << "}\n";
    else
      std::cout << "pong from " << c->daemon_name() << " in " << rtt.count() << " us\n";
    return 0;
  }
  if (command == "describe") {
    if (words.size() != 1) throw usage_error("describe takes one address");
    auto c = open_client(address, cl);
    if (address.service.empty()) {
      auto d = c->describe();
      if (json) {
        std::cout << protocol::to_json_text(protocol::to_value(d)) << "\n";
      } else {
        std::cout << "daemon " << d.daemon << "\n";
        for (const auto& s : d.services) {
          std::cout << "  " << s.name << " (" << s.driver << ", " << s.state << ")";
          if (!s.reason.empty()) std::cout << ": " << s.reason;
          std::cout << "\n";
        }
      }
    } else {
      auto s = c->describe(address.service);
      if (json)
        std::cout << protocol::to_json_text(protocol::to_value(s)) << "\n";
      else
        print_service(s);
    }
    return 0;
  }
  if (command == "lock") {
    if (address.service.empty()) throw usage_error("lock needs lab://HOST:PORT/SERVICE");
    if (!cl.flag("hold"))
      throw usage_error("a lock lives as long as its session: use lock --hold, and end it with Ctrl-C");
    return hold_lock(address, cl);
  }
  if (command == "unlock") {
    if (address.service.empty()) throw usage_error("unlock needs lab://HOST:PORT/SERVICE");
    auto c = open_client(address, cl);
    if (cl.flag("force")) {
      auto file = cl.get("admin-secret-file");
      if (!file) throw usage_error("unlock --force needs --admin-secret-file FILE");
      c->force_unlock(address.service, secret_in(*file, "--admin-secret-file"));
    } else {
      c->unlock(address.service);
    }
    std::cout << (json ? "null" : "unlocked " + address.to_string()) << "\n";
    return 0;
  }
  if (command == "locks") {
    auto c = open_client(address, cl);
    auto locks = c->lock_status(address.service);
    if (json) {
      list all;
      for (const auto& l : locks) all.push_back(lock_to_value(l));
      std::cout << protocol::to_json_text(all) << "\n";
    } else {
      for (const auto& l : locks) print_lock(l);
    }
    return 0;
  }
  if (command == "watch") {
    if (address.service.empty()) throw usage_error("watch needs lab://HOST:PORT/SERVICE");
    if (words.size() != 2) throw usage_error("watch needs one TOPIC (describe lists them)");
    return watch(address, words[1], cl);
  }
  if (command == "call") {
    if (address.service.empty()) throw usage_error("call needs lab://HOST:PORT/SERVICE");
    if (words.size() < 2) throw usage_error("call needs a METHOD");
    list args;
    map kwargs;
    for (std::size_t i = 2; i < words.size(); ++i) {
      std::string name, rest;
      if (is_keyword(words[i], name, rest))
        kwargs.emplace_back(name, parse_argument(rest));
      else if (!kwargs.empty())
        throw usage_error("positional argument " + words[i] + " after keyword arguments");
      else
        args.push_back(parse_argument(words[i]));
    }
    auto c = open_client(address, cl);
    if (cl.flag("oneway")) {
      c->call_oneway(address.service, words[1], std::move(args), std::move(kwargs));
      c->close();
      return 0;
    }
    value result = c->call(address.service, words[1], std::move(args), std::move(kwargs));
    std::cout << protocol::to_json_text(result, json ? std::numeric_limits<std::size_t>::max()
                                                    : human_array_elements)
              << "\n";
    return 0;
  }
  throw usage_error("unknown command \"" + command + "\"");
}

}  // namespace

int main(int argc, char** argv) {
  std::string command;
  bool json = false;
  try {
    // Global options may come before or after the command word.
    const std::set<std::string> valued{"timeout", "client-name", "wait", "admin-secret-file", "ns",
                                       "secret-file", "tls-ca", "tls-cert", "tls-key", "count", "max-rate", "queue"};
    const std::set<std::string> flags{"json", "help", "hold", "force", "oneway", "lan"};
    command_line cl(argc, argv, 1, valued, flags);
    json = cl.flag("json");
    if (cl.flag("help") || cl.positional().empty()) {
      std::cout << usage_text;
      return cl.flag("help") ? 0 : 2;
    }
    command = cl.positional()[0];
    // Re-read without the command word so that positional() holds the command's words.
    std::vector<char*> rest{argv[0]};
    bool skipped = false;
    for (int i = 1; i < argc; ++i) {
      if (!skipped && argv[i] == command) {
        skipped = true;
        continue;
      }
      rest.push_back(argv[i]);
    }
    command_line sub(static_cast<int>(rest.size()), rest.data(), 1, valued, flags);
    return run(command, sub);
  } catch (const usage_error& e) {
    std::cerr << "labctl: " << e.what() << "\n" << usage_text;
    return 2;
  } catch (const remote_error& e) {
    if (json)
      std::cout << protocol::to_json_text(map{{"error", protocol::to_value(e.get())}}) << "\n";
    std::cerr << "labctl: " << e.name() << ": " << e.message() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "labctl: " << e.what() << "\n";
    return 1;
  }
}
