#include "daemon.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <stdexcept>
#include <thread>
#include <vector>

#include <unistd.h>

#include "../logging/log.h"
#include "../naming/lan_announcer.h"
#include "../naming/name_registry.h"
#include "../naming/registrar.h"
#include "connection.h"
#include "daemon_state.h"
#include "worker_pool.h"

namespace labhost::server {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// How long in-flight calls may take to finish once a stop is asked for.
constexpr std::chrono::seconds stop_grace{10};

tcp::endpoint resolve_listen(asio::io_context& io, const host::endpoint_address& address) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address.host, ec);
  if (!ec) return {ip, address.port};
  tcp::resolver resolver(io);
  auto results = resolver.resolve(address.host, std::to_string(address.port), ec);
  if (ec || results.empty())
    throw std::runtime_error("cannot resolve listen address " + address.to_string() + ": " +
                             ec.message());
  return results.begin()->endpoint();
}

void accept_next(const std::shared_ptr<daemon_state>& state) {
  state->acceptor.async_accept([state](boost::system::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !state->acceptor.is_open()) return;
      LABHOST_LOG(warning) << "accept failed: " << ec.message();
    } else {
      try {
        auto c = std::make_shared<connection>(std::move(socket), state);
        if (state->connections.size() >= state->config.max_connections) {
          // Refused with a typed reply rather than left hanging in the backlog.
          c->guarded(0, [&] {
            c->refuse({errc::busy, "daemon " + state->config.name + " already serves " +
                                       std::to_string(state->config.max_connections) +
                                       " connections (max_connections)"});
          });
        } else {
          c->guarded(0, [&] { c->start(); });
        }
      } catch (const std::exception& e) {
        // No connection object could be made (no memory): this client is dropped, the
        // daemon goes on accepting.
        LABHOST_LOG(error) << "a new connection could not be set up: " << e.what();
      }
    }
    accept_next(state);
  });
}

/// The server side of host.json's "tls". Throws std::runtime_error naming the file at fault.
std::unique_ptr<asio::ssl::context> make_tls_context(const host::tls_config& tls) {
  namespace ssl = asio::ssl;
  auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  auto step = [](const char* key, const std::filesystem::path& file, auto&& action) {
    try {
      action();
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error(std::string("tls.") + key + ": " + file.string() + ": " + e.code().message());
    }
  };
  step("cert_file", tls.cert_file, [&] { context->use_certificate_chain_file(tls.cert_file.string()); });
  step("key_file", tls.key_file, [&] { context->use_private_key_file(tls.key_file.string(), ssl::context::pem); });
  if (tls.verify_clients) {
    step("ca_file", tls.ca_file, [&] { context->load_verify_file(tls.ca_file.string()); });
    context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return context;
}

}  // namespace

daemon::daemon(host::daemon_config config, const std::filesystem::path& plugin_dir)
    : state_(std::make_shared<daemon_state>(std::move(config))) {
  const auto& cfg = state_->config;
  if (!cfg.admin_secret_file.empty())
    state_->admin_secret = host::read_secret_file(cfg.admin_secret_file, "admin_secret_file");
  if (!cfg.auth_secret_file.empty())
    state_->auth_secret = host::read_secret_file(cfg.auth_secret_file, "auth.secret_file");
  if (cfg.tls.enabled()) state_->tls_context = make_tls_context(cfg.tls);
  if (!host::is_loopback(cfg.address) && state_->auth_secret.empty() && !cfg.tls.verify_clients) {
    if (!cfg.insecure)
      throw std::runtime_error("daemon " + cfg.name + ": " + cfg.address.to_string() +
                               " is reachable from the network and clients need not prove who they are "
                               "(auth.secret_file, tls.verify_clients); refusing to start");
    LABHOST_LOG(warning) << "daemon " << cfg.name << " listens on " << cfg.address.to_string()
                         << " WITHOUT authentication (host.json \"insecure\": true): anyone who can reach "
                            "it can drive its instruments";
  }
  state_->audit = std::make_unique<journal>(cfg.journal_file, cfg.journal_rotate_bytes, cfg.journal_keep_files);
  state_->value_limits.max_depth = cfg.max_value_depth;
  state_->value_limits.max_items = cfg.max_value_items;
  for (const auto& service_config : cfg.services) {
    auto slot = std::make_unique<service_slot>(
        std::make_unique<service::service>(service_config, plugin_dir, event_value_limit(state_->config)), asio::make_strand(state_->io));
    switch (slot->svc->current_state()) {
      case service::service::state::ready:
        LABHOST_LOG_SERVICE(info, service_config.name) << "ready (" << service_config.driver << ")";
        break;
      case service::service::state::waiting:
        LABHOST_LOG_SERVICE(warning, service_config.name)
            << "waiting: " << slot->svc->unavailable_reason() << "; retrying";
        break;
      case service::service::state::unavailable:
        LABHOST_LOG_SERVICE(error, service_config.name) << "unavailable: " << slot->svc->unavailable_reason();
        break;
    }
    state_->services.emplace(service_config.name, std::move(slot));
  }
  tcp::endpoint endpoint = resolve_listen(state_->io, cfg.address);
  auto& acceptor = state_->acceptor;
  boost::system::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("daemon " + cfg.name + ": cannot listen on " + cfg.address.to_string() +
                             ": " + ec.message());
}

daemon::~daemon() = default;

std::string daemon::local_address() const {
  boost::system::error_code ec;
  auto endpoint = state_->acceptor.local_endpoint(ec);
  if (ec) return "";
  host::endpoint_address a{endpoint.address().to_string(), endpoint.port()};
  return a.to_string();
}

void daemon::run(bool handle_signals) {
  auto state = state_;
  auto work = asio::make_work_guard(state->io);
  asio::signal_set signals(state->io);
  if (handle_signals) {
    signals.add(SIGINT);
    signals.add(SIGTERM);
    signals.async_wait([this](boost::system::error_code ec, int) {
      if (!ec) stop();
    });
  }
  accept_next(state);
  start_registrar();
  start_lan_announcer();

  // Sessions silent for the lease time end (their locks with them): check often enough that
  // a lock comes free well within a second of its lease running out.
  asio::steady_timer lease_timer(state->io);
  const auto sweep_period = std::clamp<std::chrono::milliseconds>(
      state->config.lease / 10, std::chrono::milliseconds(10), std::chrono::milliseconds(500));
  std::function<void()> sweep = [&] {
    lease_timer.expires_after(sweep_period);
    lease_timer.async_wait([&](boost::system::error_code wait_error) {
      if (wait_error) return;
      state->expire_sessions();
      sweep();
    });
  };
  sweep();

  // Instruments that did not open (powered after the PC, unplugged) are tried again, on their
  // service's strand, 1 s after start and then less often, up to every 30 s, until they open.
  std::vector<std::unique_ptr<asio::steady_timer>> open_retries;
  std::function<void(service_slot*, asio::steady_timer*, std::chrono::milliseconds)> retry_open =
      [&](service_slot* slot, asio::steady_timer* timer, std::chrono::milliseconds delay) {
        timer->expires_after(delay);
        timer->async_wait([&, slot, timer, delay](boost::system::error_code wait_error) {
          if (wait_error) return;
          asio::dispatch(slot->strand, [&, slot, timer, delay] {
            if (slot->svc->try_open()) {
              LABHOST_LOG_SERVICE(info, slot->svc->name()) << "ready: the instrument opened";
              return;
            }
            LABHOST_LOG_SERVICE(debug, slot->svc->name()) << "still waiting: " << slot->svc->unavailable_reason();
            retry_open(slot, timer, std::min(delay * 2, std::chrono::milliseconds(30'000)));
          });
        });
      };
  for (auto& [name, slot] : state->services) {
    if (slot->svc->current_state() != service::service::state::waiting) continue;
    open_retries.push_back(std::make_unique<asio::steady_timer>(state->io));
    retry_open(slot.get(), open_retries.back().get(), std::chrono::milliseconds(1000));
  }

  // Stopping: runs on the io_context once stop() is asked; polls the in-flight count (a
  // handful of wakeups at shutdown only) until calls are done or the grace period ends.
  asio::steady_timer stop_timer(state->io);
  stopping_ = [&, state] {
    boost::system::error_code ec;
    state->acceptor.close(ec);
    signals.cancel(ec);
    lease_timer.cancel();
    for (auto& timer : open_retries) timer->cancel();
    registrar_.reset();  // goodbye to the nameservers: the names go first
    lan_announcer_.reset();  // and the LAN's browsers are told it is gone
    auto deadline = std::chrono::steady_clock::now() + stop_grace;
    auto check = std::make_shared<std::function<void()>>();
    *check = [&, state, deadline, check] {
      if (state->calls_in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        stop_timer.expires_after(std::chrono::milliseconds(10));
        stop_timer.async_wait([check](boost::system::error_code) { (*check)(); });
        return;
      }
      if (state->calls_in_flight.load() > 0)
        LABHOST_LOG(warning) << state->calls_in_flight.load()
                             << " call(s) still running after the grace period; closing anyway";
      state->connections.stop_all();
      work.reset();
      state->io.stop();
      *check = nullptr;  // break the self-reference
    };
    (*check)();
  };

  worker_pool pool(state->io, state->config.pool_size, state->config.busy_poll);
  state->pool = &pool;
  pool.run();

  // No handler runs any more: close the drivers from this thread.
  for (auto& [name, slot] : state->services) {
    slot->svc->close();
    LABHOST_LOG_SERVICE(debug, name) << "closed";
  }
  LABHOST_LOG(info) << "daemon " << state->config.name << " stopped";
}

void daemon::serve_names() { state_->names = std::make_shared<naming::name_registry>(); }

void daemon::start_registrar() {
  const auto& cfg = state_->config;
  if (cfg.register_with.empty() || cfg.services.empty()) return;
  std::string host = cfg.address.host;
  if (host == "0.0.0.0" || host == "::" || host.empty()) {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    host = name;
  }
  boost::system::error_code ec;
  auto port = state_->acceptor.local_endpoint(ec).port();
  host::endpoint_address advertised{host, port};
  std::vector<naming::registration> names;
  for (const auto& service : cfg.services) {
    map metadata{{"daemon", cfg.name}, {"driver", service.driver}, {"description", service.description}};
    // The service's own metadata joins in, but cannot hide what labhost itself says.
    if (service.metadata.is_map())
      for (const auto& [key, v] : service.metadata.as_map())
        if (key != "daemon" && key != "driver" && key != "description") metadata.emplace_back(key, v);
    names.push_back({service.name, "lab://" + advertised.to_string() + "/" + service.name, std::move(metadata)});
  }
  char hostname[256] = {};
  ::gethostname(hostname, sizeof hostname - 1);
  registrar_ = std::make_unique<naming::registrar>(
      cfg.register_with, std::move(names),
      naming::host_connection_options("daemon " + cfg.name + "@" + hostname, state_->auth_secret, cfg.tls));
}

void daemon::start_lan_announcer() {
  const auto& cfg = state_->config;
  if (state_->names) return;  // a nameserver: clients are given its address, they do not browse for it
  if (!cfg.lan_announce) {
    LABHOST_LOG(debug) << "LAN discovery: daemon " << cfg.name << " not announced (host.json lan_discovery.announce is false)";
    return;
  }
  boost::system::error_code ec;
  auto endpoint = state_->acceptor.local_endpoint(ec);
  if (ec) return;
  naming::lan_announcement what;
  what.daemon = cfg.name;
  for (const auto& service : cfg.services) what.services.push_back(service.name);
  what.version = LABHOST_VERSION;
  what.tls = cfg.tls.enabled();
  what.auth = !state_->auth_secret.empty();
  what.listen_ip = endpoint.address().to_string();
  what.port = endpoint.port();
  lan_announcer_ = std::make_unique<naming::lan_announcer>(std::move(what));
}

void daemon::stop() {
  if (state_->shutting_down.exchange(true)) return;
  asio::post(state_->io, [this] {
    if (stopping_) stopping_();
  });
}

}  // namespace labhost::server
