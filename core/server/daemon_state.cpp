#include "daemon_state.h"

#include <boost/asio/dispatch.hpp>

#include "../logging/log.h"
#include "connection.h"

namespace labhost::server {

daemon_state::daemon_state(host::daemon_config config_in) : config(std::move(config_in)) {}

value daemon_state::stats() const {
  map per_service;
  for (const auto& [name, slot] : services) per_service.emplace_back(name, slot->stats.snapshot());
  return map{{"services", std::move(per_service)},
             {"recent_errors", errors.snapshot()},
             {"connections", static_cast<std::int64_t>(connections.size())},
             {"sessions", static_cast<std::int64_t>(sessions.count())}};
}

void daemon_state::journal_action(const service::session_info& who, std::string action, std::string service,
                                  std::string method, value arguments, std::string outcome) {
  if (!audit || !audit->enabled()) return;
  journal_record r;
  r.time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  r.action = std::move(action);
  r.service = std::move(service);
  r.method = std::move(method);
  r.arguments = std::move(arguments);
  r.client = who.client_name;
  r.pid = who.pid;
  r.address = who.address;
  r.certificate = who.certificate;
  r.outcome = std::move(outcome);
  audit->record(std::move(r));
}

daemon_description daemon_state::describe() const {
  daemon_description d;
  d.daemon = config.name;
  for (const auto& [name, slot] : services) {
    d.services.push_back(slot->svc->describe(false));
    d.services.back().calls_pending = slot->calls_pending.load();
  }
  if (names) d.services.push_back(nameserver_description(false));
  return d;
}

service_description daemon_state::describe(const service_slot& slot) const {
  auto s = slot.svc->describe(true);
  s.calls_pending = slot.calls_pending.load();
  return s;
}

service_description daemon_state::nameserver_description(bool with_methods) const {
  service_description s;
  s.name = "nameserver";
  s.driver = "builtin";
  s.driver_version = LABHOST_VERSION;
  s.vendor = "labhost";
  s.description = "Maps service names to addresses and metadata";
  s.state = "ready";
  if (with_methods) s.methods = naming::name_registry::methods();
  return s;
}

service_slot* daemon_state::find_service(std::string_view name) {
  auto it = services.find(name);
  return it == services.end() ? nullptr : it->second.get();
}

void daemon_state::end_session(const std::shared_ptr<session>& s, std::string_view why) {
  if (!s->mark_ended()) return;
  sessions.remove(s->token());
  auto info = s->info();
  LABHOST_LOG(debug) << "session of " << info.client_name << " (pid " << info.pid << ") ended: " << why;
  s->stop_subscriptions();
  if (names) {
    if (auto dropped = names->drop_session(s->token()))
      LABHOST_LOG(info) << dropped << " name(s) of " << info.client_name << " removed: " << why;
  }
  for (auto& [name, slot] : services) {
    if (slot->svc->release_if_held_by(s->token())) {
      LABHOST_LOG_SERVICE(info, name) << "lock of " << info.client_name << " released: " << why;
      grant_waiters(*slot);
    }
    if (slot->svc->config().mode == host::instance_mode::session) {
      // Session instances are driver code: close them on the service's strand.
      boost::asio::dispatch(slot->strand, [svc = slot->svc.get(), token = s->token()] {
        svc->end_session(token);
      });
    }
  }
  if (auto c = s->attached()) c->stop();
}

void daemon_state::expire_sessions() {
  for (auto& s : sessions.silent_for(config.lease))
    end_session(s, "no sign of life for the lease time (" + std::to_string(config.lease.count()) + " ms)");
}

protocol::lock_report daemon_state::lock_report_for(service_slot& slot, const std::string& asking_token) {
  protocol::lock_report r;
  r.service = slot.svc->name();
  auto held = slot.svc->holder();
  if (!held) return r;
  r.locked = true;
  r.yours = held->holder.token == asking_token;
  r.holder_name = held->holder.client_name;
  r.holder_pid = held->holder.pid;
  r.holder_address = held->holder.address;
  r.since = std::chrono::duration<double>(held->since.time_since_epoch()).count();
  if (auto s = sessions.find(held->holder.token)) {
    auto left = s->last_seen() + config.lease - session::clock::now();
    r.lease_left_ms = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
  }
  return r;
}

void daemon_state::grant_waiters(service_slot& slot) {
  std::shared_ptr<lock_waiter> granted;
  {
    std::lock_guard lock(slot.waiters_mutex);
    while (!slot.waiters.empty()) {
      auto w = slot.waiters.front();
      slot.waiters.pop_front();
      if (w->done || w->who->ended() || w->reply_to.expired()) continue;
      auto outcome = slot.svc->try_lock(w->who->info());
      if (outcome == service::service::lock_result::held_by_other) {
        slot.waiters.push_front(w);  // someone took it first; keep our place in line
        return;
      }
      w->done = true;
      granted = w;
      slot.stats.lock_waited(std::chrono::steady_clock::now() - w->since);
      break;
    }
  }
  if (!granted) return;
  granted->timer.cancel();
  LABHOST_LOG_SERVICE(info, slot.svc->name()) << "locked by " << granted->who->info().client_name << " (after waiting)";
  if (auto c = granted->reply_to.lock())
    c->send_value(protocol::message_type::result, granted->request_id,
                  protocol::to_value(lock_report_for(slot, granted->who->token())));
}

}  // namespace labhost::server
