#include "supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "../logging/log.h"
#include "../logging/rotating_file.h"
#include "../naming/registrar.h"
#include "../web/status_collector.h"
#include "../web/status_server.h"
#include "host_config.h"

namespace labhost::host {
namespace {

using clock_type = std::chrono::steady_clock;
namespace json = boost::json;

constexpr auto first_backoff = std::chrono::milliseconds(200);
constexpr auto max_backoff = std::chrono::milliseconds(30'000);
constexpr auto quick_exit = std::chrono::seconds(10);  // an exit sooner than this counts as a crash
constexpr int crash_loop_after = 4;                     // quick exits in a row
constexpr auto stop_grace = std::chrono::seconds(15);   // then SIGKILL

/// One child process: the nameserver or a daemon.
struct child {
  std::string name;  // daemon name, or "nameserver"
  bool nameserver = false;
  std::string address;
  std::string fingerprint;  // what it was started from; reload compares it
  pid_t pid = 0;
  int output_fd = -1;       // the child's stdout and stderr
  std::string partial_line;
  std::string state = "starting";  // starting, running, backoff, crash_loop, stopping, stopped
  int restarts = 0;
  int quick_exits = 0;
  clock_type::time_point started{};
  clock_type::time_point restart_at{};
  std::chrono::milliseconds backoff = first_backoff;
  std::string last_error;   // why it last exited, with the last error it logged
  std::string run_error;    // the last error line of the current run
  bool remove_after_exit = false;   // reload removed it
  bool restart_after_exit = false;  // reload changed it
  std::shared_ptr<logging::rotating_file> log;  // STATE_DIR/logs/NAME.log: what it said (labhost logs)
};

class supervisor {
 public:
  supervisor(std::filesystem::path config_file, std::string log_level)
      : config_file_(std::move(config_file)), log_level_(std::move(log_level)) {}

  int run();

 private:
  void take_state_dir();
  void open_control_socket();
  void spawn(child& c);
  std::vector<std::string> command_for(const child& c) const;
  void start_children_from(const host_config& config);
  void on_child_output(child& c);
  void reap_children();
  void on_control_connection();
  void on_control_request(int fd);
  std::string ps_reply() const;
  std::string reload_reply();
  void begin_stop();
  bool all_stopped() const;
  int poll_timeout_ms() const;
  void restart_due_children();
  /// Starts the status page of host.json's "http", if any (stopping the one that runs).
  void start_status_page();
  /// Tells the status page what each process is doing now.
  void publish_processes();

  std::filesystem::path config_file_;
  std::string log_level_;
  host_config config_;
  std::filesystem::path socket_path_;
  int lock_fd_ = -1;
  int listen_fd_ = -1;
  int signal_fd_ = -1;
  std::map<std::string, child> children_;
  std::vector<int> control_clients_;     // connections waiting for their request line
  std::vector<int> waiting_for_stop_;    // `labhost down` callers, answered once all stopped
  bool stopping_ = false;
  clock_type::time_point kill_at_{};
  std::unique_ptr<web::status_collector> collector_;  // with status_server_: the status page
  std::unique_ptr<web::status_server> status_server_;
  std::string status_url_;  // "http://127.0.0.1:7780/"
};

std::string exit_text(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) +
                                  " (" + ::strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

std::string nameserver_fingerprint(const host_config& config) {
  return "ns|" + config.nameserver->listen.to_string() + "|" + std::to_string(config.nameserver->lease.count()) + "|" +
         config.auth_secret_file.string() + "|" + std::to_string(config.insecure) + "|" +
         config.tls.cert_file.string() + "|" + config.tls.key_file.string() + "|" + config.tls.ca_file.string() + "|" +
         std::to_string(config.tls.verify_clients);
}

/// A log line as the children write theirs ("2026-12-03 16:40:01.123456 info [supervisor] ..."),
/// for what the supervisor has to say about a child in that child's log.
std::string supervisor_line(std::string_view severity, const std::string& text) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm local{};
  ::localtime_r(&t, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1'000'000;
  char fraction[16];
  std::snprintf(fraction, sizeof fraction, ".%06lld", static_cast<long long>(micros));
  return std::string(stamp) + fraction + " " + std::string(severity) + " [supervisor] " + text + "\n";
}

/// Appends to a child's own log; a full disk loses the line, never the supervisor.
void write_child_log(const child& c, const std::string& text) {
  if (c.log) c.log->write(text);
}

void write_all(int fd, const std::string& text) {
  std::size_t sent = 0;
  while (sent < text.size()) {
    ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::filesystem::path control_socket_path(const std::filesystem::path& config_file) {
  return read_state_dir(config_file) / "control.sock";
}

void supervisor::take_state_dir() {
  std::filesystem::create_directories(config_.state_dir);
  std::filesystem::permissions(config_.state_dir, std::filesystem::perms::owner_all);
  auto lock_file = config_.state_dir / "supervisor.lock";
  lock_fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) throw std::runtime_error("cannot open " + lock_file.string() + ": " + std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ::pread(lock_fd_, pid, sizeof pid - 1, 0);
    throw std::runtime_error("another labhost up (pid " + std::string(pid) + ") runs on the state directory " +
                             config_.state_dir.string());
  }
  // The lock is ours, so whatever socket is there was left by a supervisor that died.
  std::string pid = std::to_string(::getpid());
  ::ftruncate(lock_fd_, 0);
  ::pwrite(lock_fd_, pid.data(), pid.size(), 0);
}

void supervisor::open_control_socket() {
  socket_path_ = config_.state_dir / "control.sock";
  ::unlink(socket_path_.c_str());
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.string().size() >= sizeof address.sun_path)
    throw std::runtime_error("state directory path too long for a control socket: " + socket_path_.string());
  std::strcpy(address.sun_path, socket_path_.c_str());
  mode_t old_mask = ::umask(0077);  // the socket is the owner's only: it can stop everything
  int bound = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::umask(old_mask);
  if (bound != 0 || ::listen(listen_fd_, 16) != 0)
    throw std::runtime_error("cannot listen on " + socket_path_.string() + ": " + std::strerror(errno));
}

std::vector<std::string> supervisor::command_for(const child& c) const {
  std::string level = log_level_.empty() ? config_.logging.level : log_level_;
  if (c.nameserver) {
    std::vector<std::string> command{"labhost", "ns", "--listen", config_.nameserver->listen.to_string(), "--lease",
                                     std::to_string(std::chrono::duration<double>(config_.nameserver->lease).count()),
                                     "--log-level", level};
    if (!config_.auth_secret_file.empty()) command.insert(command.end(), {"--secret-file", config_.auth_secret_file.string()});
    if (config_.insecure) command.push_back("--insecure");
    if (config_.tls.enabled()) {
      command.insert(command.end(), {"--tls-cert", config_.tls.cert_file.string(), "--tls-key",
                                     config_.tls.key_file.string(), "--tls-ca", config_.tls.ca_file.string()});
      if (config_.tls.verify_clients) command.push_back("--tls-verify-clients");
    }
    return command;
  }
  return {"labhost", "daemon", "--config", config_.file.string(), "--name", c.name, "--log-level", level};
}

void supervisor::spawn(child& c) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  auto argv_strings = command_for(c);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the supervisor died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    std::fprintf(stderr, "cannot start %s: %s\n", c.name.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  ::fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
  c.pid = pid;
  c.output_fd = pipe_fds[0];
  c.partial_line.clear();
  c.started = clock_type::now();
  c.state = "starting";
  c.run_error.clear();
  LABHOST_LOG(info) << (c.nameserver ? "nameserver" : "daemon " + c.name) << " started (pid " << pid << ")";
  if (!c.log) {
    try {
      c.log = std::make_shared<logging::rotating_file>(config_.state_dir / "logs" / (c.name + ".log"),
                                                       config_.logging.rotate_bytes, config_.logging.keep_files);
    } catch (const std::exception& e) {
      LABHOST_LOG(warning) << "no log file for " << c.name << ": " << e.what();
    }
  }
  write_child_log(c, supervisor_line("info", "started (pid " + std::to_string(pid) + ")"));
}

void supervisor::start_children_from(const host_config& config) {
  if (config.nameserver) {
    auto& c = children_["nameserver"];
    c.name = "nameserver";
    c.nameserver = true;
    c.address = config.nameserver->listen.to_string();
    c.fingerprint = nameserver_fingerprint(config);
    spawn(c);
  }
  for (const auto& d : config.daemons) {
    auto& c = children_[d.name];
    c.name = d.name;
    c.address = d.address.to_string();
    c.fingerprint = fingerprint(d, config);
    spawn(c);
  }
}

void supervisor::on_child_output(child& c) {
  char buffer[8192];
  while (true) {
    ssize_t n = ::read(c.output_fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {  // the child closed its output: it is exiting
        ::close(c.output_fd);
        c.output_fd = -1;
      }
      return;
    }
    c.partial_line.append(buffer, static_cast<std::size_t>(n));
    std::size_t newline;
    while ((newline = c.partial_line.find('\n')) != std::string::npos) {
      std::string line = c.partial_line.substr(0, newline);
      c.partial_line.erase(0, newline + 1);
      if (auto at = line.find(" listening on "); at != std::string::npos && line.starts_with("labhost ")) {
        c.state = "running";
        // The address it really listens on: the port it was given, or the one it got for 0.
        c.address = line.substr(at + std::string_view(" listening on ").size());
        continue;  // the ready line is for the supervisor, not the log
      }
      if (line.find(" error [") != std::string::npos || line.starts_with("labhost "))
        c.run_error = line;
      logging::write_raw(line);
      write_child_log(c, line + "\n");
    }
  }
}

void supervisor::reap_children() {
  int status;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    for (auto it = children_.begin(); it != children_.end(); ++it) {
      child& c = it->second;
      if (c.pid != pid) continue;
      if (c.output_fd >= 0) on_child_output(c);  // what it said last
      if (c.output_fd >= 0) ::close(c.output_fd);
      c.output_fd = -1;
      c.pid = 0;
      const std::string how = exit_text(status);
      if (stopping_ || c.remove_after_exit) {
        c.state = "stopped";
        LABHOST_LOG(info) << c.name << " stopped (" << how << ")";
        write_child_log(c, supervisor_line("info", "stopped (" + how + ")"));
        if (c.remove_after_exit && !stopping_) children_.erase(it);
        break;
      }
      if (c.restart_after_exit) {  // reload changed it: start the new one now
        c.restart_after_exit = false;
        c.quick_exits = 0;
        c.backoff = first_backoff;
        ++c.restarts;
        spawn(c);
        break;
      }
      c.last_error = c.run_error.empty() ? how : how + ": " + c.run_error;
      const bool quick = clock_type::now() - c.started < quick_exit;
      c.quick_exits = quick ? c.quick_exits + 1 : 0;
      if (!quick) c.backoff = first_backoff;
      c.state = c.quick_exits >= crash_loop_after ? "crash_loop" : "backoff";
      c.restart_at = clock_type::now() + c.backoff;
      logging::log_line(c.state == "crash_loop" ? logging::severity::error : logging::severity::warning)
          << c.name << " " << how << (c.state == "crash_loop" ? " again: crash loop" : "") << "; restart in "
          << c.backoff.count() << " ms";
      write_child_log(c, supervisor_line(c.state == "crash_loop" ? "error" : "warning",
                                         how + (c.state == "crash_loop" ? " again: crash loop" : "") + "; restart in " +
                                             std::to_string(c.backoff.count()) + " ms"));
      c.backoff = std::min(c.backoff * 2, max_backoff);
      break;
    }
  }
}

void supervisor::restart_due_children() {
  if (stopping_) return;
  const auto now = clock_type::now();
  for (auto& [name, c] : children_) {
    if (c.pid != 0 || (c.state != "backoff" && c.state != "crash_loop") || now < c.restart_at) continue;
    ++c.restarts;
    const bool was_looping = c.state == "crash_loop";
    spawn(c);
    if (was_looping) c.state = "crash_loop";  // until it stays up
  }
}

std::string supervisor::ps_reply() const {
  json::array daemons;
  const auto now = clock_type::now();
  for (const auto& [name, c] : children_) {
    json::object d;
    d["name"] = c.name;
    d["role"] = c.nameserver ? "nameserver" : "daemon";
    d["pid"] = c.pid;
    d["address"] = c.address;
    std::string state = c.state;
    // A daemon in a crash loop that has now stayed up long enough is running again.
    if (state == "crash_loop" && c.pid != 0 && now - c.started > quick_exit) state = "running";
    d["state"] = state;
    d["restarts"] = c.restarts;
    d["uptime_s"] = c.pid != 0 ? std::chrono::duration<double>(now - c.started).count() : 0.0;
    d["last_error"] = c.last_error;
    daemons.push_back(d);
  }
  json::object reply{{"ok", true}, {"config", config_.file.string()}, {"pid", ::getpid()}, {"daemons", daemons}};
  if (status_server_) reply["http"] = status_url_;
  return json::serialize(reply);
}

void supervisor::start_status_page() {
  status_server_.reset();
  collector_.reset();
  if (!config_.http) return;
  std::string secret;
  if (!config_.auth_secret_file.empty()) secret = read_secret_file(config_.auth_secret_file, "auth.secret_file");
  char host_name[256] = {};
  ::gethostname(host_name, sizeof host_name - 1);
  web::collector_settings collect;
  collect.host_name = host_name;
  collect.connection = naming::host_connection_options("labhost up", secret, config_.tls);
  collect.connection.heartbeats = false;
  collect.connection.timeout = std::chrono::seconds(2);
  collect.connection.connect_timeout = std::chrono::seconds(2);
  collect.refresh = std::chrono::milliseconds(static_cast<long long>(config_.http->refresh_s * 1000));
  // The same rules as the daemons': the host's secret, and its TLS (host_config lets it off
  // loopback only with TLS when a secret is asked, so that it never crosses the net in clear).
  web::server_settings serve;
  serve.listen = config_.http->listen;
  serve.secret = secret;
  serve.tls = config_.tls;
  collector_ = std::make_unique<web::status_collector>(collect);
  publish_processes();
  try {
    status_server_ = std::make_unique<web::status_server>(serve, *collector_);
    status_url_ = (serve.tls.enabled() ? "https://" : "http://") + status_server_->local_address() + "/";
    LABHOST_LOG(info) << "status page on " << status_url_ << " (metrics at " << status_url_ << "metrics)";
  } catch (const std::exception& e) {
    // The instruments matter more than the page: serve them, and say why there is no page.
    LABHOST_LOG(error) << "no status page: " << e.what();
    collector_.reset();
  }
}

void supervisor::publish_processes() {
  if (!collector_) return;
  const auto now_steady = clock_type::now();
  const double now_unix =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<web::process_view> views;
  for (const auto& [name, c] : children_) {
    web::process_view v;
    v.name = c.name;
    v.role = c.nameserver ? "nameserver" : "daemon";
    v.address = c.address;
    v.state = c.state;
    if (v.state == "crash_loop" && c.pid != 0 && now_steady - c.started > quick_exit) v.state = "running";
    v.pid = c.pid;
    v.restarts = c.restarts;
    v.started = c.pid != 0 ? now_unix - std::chrono::duration<double>(now_steady - c.started).count() : 0;
    v.last_error = c.last_error;
    views.push_back(std::move(v));
  }
  collector_->set_processes(std::move(views));
}

std::string supervisor::reload_reply() {
  host_config fresh;
  try {
    fresh = load_host_config(config_file_);
  } catch (const config_error& e) {
    LABHOST_LOG(error) << "reload refused: " << e.what();
    return json::serialize(json::object{{"ok", false}, {"error", e.what()}});
  }
  if (fresh.state_dir != config_.state_dir)
    return json::serialize(json::object{{"ok", false}, {"error", "state_dir cannot change on reload"}});

  std::map<std::string, std::string> wanted;  // name -> fingerprint
  if (fresh.nameserver)
    wanted["nameserver"] = nameserver_fingerprint(fresh);
  for (const auto& d : fresh.daemons) wanted[d.name] = fingerprint(d, fresh);

  json::array started, stopped, restarted, unchanged;
  // The status page changes with its section (or with the secret and TLS it uses off loopback).
  auto page_of = [](const host_config& c) {
    return c.http ? c.http->listen.to_string() + "|" + std::to_string(c.http->refresh_s) + "|" +
                        c.auth_secret_file.string() + "|" + c.tls.cert_file.string() + "|" +
                        std::to_string(c.tls.verify_clients)
                  : std::string();
  };
  const bool page_changed = page_of(fresh) != page_of(config_);
  config_ = fresh;  // children started from here on read the new file
  if (page_changed) start_status_page();
  for (auto& [name, c] : children_) {
    auto it = wanted.find(name);
    if (it == wanted.end()) {
      c.remove_after_exit = true;
      if (c.pid) ::kill(c.pid, SIGTERM), c.state = "stopping";
      stopped.push_back(json::string(name));
    } else if (it->second != c.fingerprint) {
      c.fingerprint = it->second;
      if (fresh.nameserver && c.nameserver) c.address = fresh.nameserver->listen.to_string();
      if (auto* d = fresh.find_daemon(name)) c.address = d->address.to_string();
      if (c.pid) {
        c.restart_after_exit = true;
        c.state = "stopping";
        ::kill(c.pid, SIGTERM);
      } else {
        c.restart_at = clock_type::now();
        c.quick_exits = 0;
        c.backoff = first_backoff;
      }
      restarted.push_back(json::string(name));
    } else {
      unchanged.push_back(json::string(name));
    }
  }
  // Erase children already stopped and removed; start the added ones.
  for (auto it = children_.begin(); it != children_.end();)
    it = (it->second.remove_after_exit && it->second.pid == 0) ? children_.erase(it) : std::next(it);
  for (const auto& [name, fp] : wanted) {
    if (children_.count(name)) continue;
    auto& c = children_[name];
    c.name = name;
    c.nameserver = name == "nameserver" && fresh.nameserver.has_value();
    c.address = c.nameserver ? fresh.nameserver->listen.to_string() : fresh.find_daemon(name)->address.to_string();
    c.fingerprint = fp;
    spawn(c);
    started.push_back(json::string(name));
  }
  LABHOST_LOG(info) << "reloaded " << config_file_.string() << ": " << started.size() << " started, "
                    << stopped.size() << " stopped, " << restarted.size() << " restarted, "
                    << unchanged.size() << " unchanged";
  return json::serialize(json::object{{"ok", true},
                                      {"started", started},
                                      {"stopped", stopped},
                                      {"restarted", restarted},
                                      {"unchanged", unchanged}});
}

void supervisor::on_control_connection() {
  while (true) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    timeval tv{2, 0};  // a client has two seconds to say what it wants
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    control_clients_.push_back(fd);
  }
}

void supervisor::on_control_request(int fd) {
  control_clients_.erase(std::remove(control_clients_.begin(), control_clients_.end(), fd), control_clients_.end());
  std::string request;
  char buffer[1024];
  while (request.find('\n') == std::string::npos && request.size() < 4096) {
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    request.append(buffer, static_cast<std::size_t>(n));
  }
  std::string command;
  boost::system::error_code ec;
  auto parsed = json::parse(request, ec);
  if (!ec && parsed.is_object())
    if (auto* c = parsed.as_object().if_contains("command"); c && c->is_string()) command = c->as_string();
  if (command == "ps") {
    write_all(fd, ps_reply() + "\n");
  } else if (command == "reload") {
    write_all(fd, reload_reply() + "\n");
  } else if (command == "down") {
    LABHOST_LOG(info) << "labhost down: stopping everything";
    begin_stop();
    waiting_for_stop_.push_back(fd);  // answered once every child has stopped
    return;
  } else {
    write_all(fd, json::serialize(json::object{{"ok", false}, {"error", "unknown command \"" + command + "\""}}) + "\n");
  }
  ::close(fd);
}

void supervisor::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  kill_at_ = clock_type::now() + stop_grace;
  for (auto& [name, c] : children_) {
    if (c.pid) {
      ::kill(c.pid, SIGTERM);
      c.state = "stopping";
    } else {
      c.state = "stopped";
    }
  }
}

bool supervisor::all_stopped() const {
  return std::all_of(children_.begin(), children_.end(), [](const auto& e) { return e.second.pid == 0; });
}

int supervisor::poll_timeout_ms() const {
  auto next = clock_type::now() + std::chrono::seconds(60);
  if (stopping_) next = std::min(next, kill_at_);
  for (const auto& [name, c] : children_)
    if (c.pid == 0 && !stopping_ && (c.state == "backoff" || c.state == "crash_loop")) next = std::min(next, c.restart_at);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_type::now()).count();
  return static_cast<int>(std::clamp<long long>(ms + 1, 0, 60'000));
}

int supervisor::run() {
  config_ = load_host_config(config_file_);
  if (!config_.logging.file.empty())
    logging::add_file(config_.logging.file.string(), config_.logging.rotate_bytes, config_.logging.keep_files);
  take_state_dir();
  open_control_socket();

  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled, sig);
  ::sigprocmask(SIG_BLOCK, &handled, nullptr);
  signal_fd_ = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);

  LABHOST_LOG(info) << "labhost up on " << config_file_.string() << " (state in " << config_.state_dir.string() << ")";
  start_children_from(config_);
  start_status_page();

  while (true) {
    std::vector<pollfd> fds{{signal_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (int fd : control_clients_) fds.push_back({fd, POLLIN, 0});
    std::vector<child*> watched;
    for (auto& [name, c] : children_)
      if (c.output_fd >= 0) fds.push_back({c.output_fd, POLLIN, 0}), watched.push_back(&c);
    int ready = ::poll(fds.data(), fds.size(), poll_timeout_ms());
    if (ready < 0 && errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));

    // Children's output first: `watched` points into children_, which the steps below may
    // change (a reaped child removed by reload is erased).
    std::size_t index = 2;
    std::vector<int> requests;
    for (int fd : control_clients_) {
      if (fds[index++].revents) requests.push_back(fd);
    }
    for (std::size_t i = 0; i < watched.size(); ++i)
      if (fds[index + i].revents && watched[i]->output_fd >= 0) on_child_output(*watched[i]);
    watched.clear();
    if (fds[0].revents) {
      signalfd_siginfo info;
      while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGINT || info.ssi_signo == SIGTERM) {
          LABHOST_LOG(info) << "stopping every daemon";
          begin_stop();
        } else if (info.ssi_signo == SIGHUP && !stopping_) {
          reload_reply();
        }
      }
    }
    for (int fd : requests) on_control_request(fd);
    if (fds[1].revents) on_control_connection();
    reap_children();

    if (stopping_) {
      if (all_stopped()) break;
      if (clock_type::now() >= kill_at_)
        for (auto& [name, c] : children_)
          if (c.pid) ::kill(c.pid, SIGKILL);
      continue;
    }
    restart_due_children();
    publish_processes();
  }

  for (int fd : waiting_for_stop_) {
    write_all(fd, json::serialize(json::object{{"ok", true}, {"stopped", true}}) + "\n");
    ::close(fd);
  }
  ::unlink(socket_path_.c_str());
  status_server_.reset();
  collector_.reset();
  LABHOST_LOG(info) << "all daemons stopped";
  return 0;
}

int run_supervisor(const std::filesystem::path& config_file, const std::string& log_level_override) {
  supervisor s(config_file, log_level_override);
  return s.run();
}

std::string control_request(const std::filesystem::path& config_file, const std::string& command) {
  auto path = control_socket_path(config_file);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    throw std::runtime_error("no labhost up is running for " + config_file.string() + " (" + path.string() +
                             ": " + std::strerror(errno) + ")");
  }
  write_all(fd, json::serialize(json::object{{"command", command}}) + "\n");
  std::string reply;
  char buffer[65536];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0) {
    reply.append(buffer, static_cast<std::size_t>(n));
    if (reply.find('\n') != std::string::npos) break;
  }
  ::close(fd);
  if (reply.empty()) throw std::runtime_error("the supervisor closed the control connection without a reply");
  return reply.substr(0, reply.find('\n'));
}

}  // namespace labhost::host
