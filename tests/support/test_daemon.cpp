#include "test_daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <signal.h>
#include <sstream>
#include <thread>
#include <stdexcept>
#include <stdlib.h>

namespace labhost::testing {

std::filesystem::path bin_dir() { return LABHOST_TEST_BIN_DIR; }
std::filesystem::path plugin_dir() { return LABHOST_TEST_SIM_PLUGIN_DIR; }
std::filesystem::path test_plugin_dir() { return LABHOST_TEST_PLUGIN_DIR; }

temp_dir::temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "labhost-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path make_plugin_folder(const std::filesystem::path& dir) {
  auto plugins = dir / "plugins";
  std::filesystem::create_directories(plugins);
  for (const auto& source : {plugin_dir(), test_plugin_dir()})
    for (const auto& entry : std::filesystem::directory_iterator(source))
      if (entry.path().extension() == ".so")
        std::filesystem::create_symlink(entry.path(), plugins / entry.path().filename());
  return plugins;
}

test_daemon::test_daemon(const std::string& services, const std::string& daemon_keys,
                         const std::string& host_keys) {
  make_plugin_folder(dir_.path());
  auto config = dir_.path() / "host.json";
  {
    std::ofstream out(config);
    bool has_address = daemon_keys.find("\"address\"") != std::string::npos;
    out << "{\"plugin_dir\": \"plugins\", " << (host_keys.empty() ? "" : host_keys + ", ")
        << "\"daemons\": {\"test\": {" << (has_address ? "" : "\"address\": \"127.0.0.1:0\", ")
        << (daemon_keys.empty() ? "" : daemon_keys + ", ") << "\"services\": " << services << "}}}\n";
  }
  process_ = std::make_unique<test_process>(
      std::vector<std::string>{(bin_dir() / "labhost").string(), "daemon", "--config", config.string(),
                               "--name", "test", "--log-level", "debug"},
      (dir_.path() / "daemon.log").string());
  auto line = process_->read_line();
  const std::string marker = " listening on 127.0.0.1:";
  auto at = line ? line->find(marker) : std::string::npos;
  if (at == std::string::npos)
    throw std::runtime_error("labhost daemon did not start: " + log());
  port_ = static_cast<std::uint16_t>(std::stoi(line->substr(at + marker.size())));
}

test_daemon::~test_daemon() {
  if (process_->running()) stop();
}

std::string test_daemon::address(const std::string& service) const {
  return "lab://127.0.0.1:" + std::to_string(port_) + (service.empty() ? "" : "/" + service);
}

std::shared_ptr<client> test_daemon::connect(client_options options) const {
  if (options.client_name.empty()) options.client_name = "test@localhost";
  return client::connect("127.0.0.1", port_, options);
}

std::string test_daemon::log() const {
  std::ifstream in(dir_.path() / "daemon.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int test_daemon::stop() {
  process_->signal(SIGTERM);
  return process_->wait_or_kill(std::chrono::seconds(30));
}

test_nameserver::test_nameserver(std::uint16_t port, double lease_s) {
  process_ = std::make_unique<test_process>(
      std::vector<std::string>{(bin_dir() / "labhost").string(), "ns", "--listen",
                               "127.0.0.1:" + std::to_string(port), "--lease", std::to_string(lease_s),
                               "--log-level", "debug"},
      (dir_.path() / "nameserver.log").string());
  auto line = process_->read_line();
  const std::string marker = "labhost nameserver listening on 127.0.0.1:";
  if (!line || line->find(marker) != 0) throw std::runtime_error("labhost ns did not start: " + log());
  port_ = static_cast<std::uint16_t>(std::stoi(line->substr(marker.size())));
}

std::string test_nameserver::log() const {
  std::ifstream in(dir_.path() / "nameserver.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool eventually(const std::function<bool()>& condition, std::chrono::seconds limit) {
  auto give_up = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < give_up) {
    try {
      if (condition()) return true;
    } catch (const std::exception&) {
      // not yet
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace labhost::testing
