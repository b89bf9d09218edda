// labctl: the command line client. describe, call and ping a daemon or service.
#include <boost/json/parse.hpp>
#include <iostream>
#include <string>

#include "command_line.h"
#include "labhost/client.h"
#include "protocol/json_value.h"
#include "protocol/messages.h"

namespace {

using namespace labhost;
using tools::command_line;
using tools::usage_error;

constexpr const char* usage_text =
    "usage: labctl [--json] [--timeout SECONDS] [--client-name NAME] COMMAND ...\n"
    "  describe lab://HOST:PORT[/SERVICE]       the daemon's services, or a service's methods\n"
    "  call lab://HOST:PORT/SERVICE METHOD [ARG...]\n"
    "                                           call a method; each ARG is a JSON literal\n"
    "                                           (1550.5, true, \"text\", [1,2]) or name=JSON for a\n"
    "                                           keyword argument; a word that is not JSON is a string\n"
    "  ping lab://HOST:PORT                     round trip to a daemon\n"
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

std::shared_ptr<client> open_client(const service_address& address, const command_line& cl) {
  client_options options;
  options.client_name = cl.get("client-name", "");
  if (auto t = cl.get("timeout")) {
    double seconds = std::stod(*t);
    if (seconds < 0) throw usage_error("--timeout must not be negative");
    options.timeout = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
  }
  return client::connect(address.host, address.port, options);
}

void print_service(const service_description& s) {
  std::cout << s.name << " (" << s.driver << " " << s.driver_version << ", " << s.state << ")";
  if (!s.reason.empty()) std::cout << ": " << s.reason;
  std::cout << "\n";
  if (!s.description.empty()) std::cout << "  " << s.description << "\n";
  for (const auto& m : s.methods) {
    std::string params;
    for (const auto& p : m.params) params += (params.empty() ? "" : ", ") + p.name + ": " + p.type;
    std::cout << "  " << m.name << "(" << params << ") -> " << m.returns << "\n";
    if (!m.doc.empty()) std::cout << "      " << m.doc << "\n";
  }
}

int run(const std::string& command, const command_line& cl) {
  const auto& words = cl.positional();
  const bool json = cl.flag("json");
  if (words.empty()) throw usage_error(command + " needs an address");
  auto address = service_address::parse(words[0]);

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
    command_line cl(argc, argv, 1, {"timeout", "client-name"}, {"json", "help"});
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
    command_line sub(static_cast<int>(rest.size()), rest.data(), 1, {"timeout", "client-name"},
                     {"json", "help"});
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
