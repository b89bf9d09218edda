#include "registrar.h"

#include <algorithm>

#include "../logging/log.h"
#include "labhost/client.h"

namespace labhost::naming {

client_options host_connection_options(std::string client_name, std::string secret, const host::tls_config& tls) {
  client_options options;
  options.client_name = std::move(client_name);
  options.secret = std::move(secret);
  options.use_environment = false;
  options.busy_poll = std::chrono::microseconds::zero();  // background talk: no hurry, no polling
  if (tls.enabled()) {
    options.tls_ca_file = tls.ca_file.string();
    options.tls_cert_file = tls.cert_file.string();
    options.tls_key_file = tls.key_file.string();
  }
  return options;
}

registrar::registrar(std::vector<host::endpoint_address> nameservers, std::vector<registration> names,
                     client_options connection)
    : names_(std::move(names)), connection_(std::move(connection)) {
  for (const auto& ns : nameservers) threads_.emplace_back([this, ns] { keep_registered(ns); });
}

registrar::~registrar() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

bool registrar::pause(std::chrono::milliseconds period) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, period, [&] { return stopping_; });
}

void registrar::keep_registered(const host::endpoint_address& nameserver) {
  const std::string where = "nameserver " + nameserver.to_string();
  auto backoff = std::chrono::milliseconds(200);
  bool reported_unreachable = false;
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    std::shared_ptr<client> ns;
    try {
      client_options options = connection_;
      options.heartbeats = false;  // this loop pings, more often than heartbeats would
      options.reconnect = false;   // a new session re-registers everything below
      options.timeout = std::chrono::seconds(5);
      options.connect_timeout = std::chrono::seconds(2);
      ns = client::connect(nameserver.host, nameserver.port, options);
      std::vector<const registration*> pending;
      for (const auto& r : names_) pending.push_back(&r);
      reported_unreachable = false;
      backoff = std::chrono::milliseconds(200);
      bool announced = false;
      while (true) {
        for (auto it = pending.begin(); it != pending.end();) {
          try {
            ns->call("nameserver", "register", {(*it)->name, (*it)->address, (*it)->metadata});
            it = pending.erase(it);
          } catch (const remote_error& e) {
            if (e.code() != errc::name_taken) throw;
            LABHOST_LOG(warning) << where << ": " << e.message() << "; retrying";
            ++it;
          }
        }
        if (pending.empty() && !announced) {
          LABHOST_LOG(info) << "registered " << names_.size() << " name(s) with " << where;
          announced = true;
        }
        if (!pause(std::chrono::milliseconds(pending.empty() ? 500 : 2000))) {
          ns->close();  // goodbye: the names go with the session
          return;
        }
        ns->ping();
      }
    } catch (const remote_error& e) {
      if (!reported_unreachable)
        LABHOST_LOG(warning) << where << " unreachable (" << e.name() << ": " << e.message()
                             << "); retrying with backoff";
      reported_unreachable = true;
    }
    if (!pause(backoff)) return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(10'000));
  }
}

}  // namespace labhost::naming
