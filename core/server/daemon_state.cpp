#include "daemon_state.h"

#include <cstdio>

#include "connection.h"

namespace labhost::server {

daemon_state::daemon_state(host::daemon_config config_in) : config(std::move(config_in)) {}

std::string daemon_state::new_session_token() {
  std::lock_guard lock(token_mutex_);
  std::string token;
  for (int i = 0; i < 4; ++i) {
    char chunk[9];
    std::snprintf(chunk, sizeof chunk, "%08x", static_cast<unsigned>(random_()));
    token += chunk;
  }
  return token;
}

daemon_description daemon_state::describe() const {
  daemon_description d;
  d.daemon = config.name;
  for (const auto& [name, slot] : services) d.services.push_back(slot->svc->describe(false));
  return d;
}

void daemon_state::add(const std::shared_ptr<connection>& c) {
  std::lock_guard lock(connections_mutex_);
  connections_[c.get()] = c;
}

void daemon_state::remove(const connection* c) {
  std::lock_guard lock(connections_mutex_);
  connections_.erase(c);
}

std::size_t daemon_state::connection_count() {
  std::lock_guard lock(connections_mutex_);
  return connections_.size();
}

void daemon_state::close_all_connections() {
  std::vector<std::shared_ptr<connection>> open;
  {
    std::lock_guard lock(connections_mutex_);
    for (auto& [key, weak] : connections_)
      if (auto c = weak.lock()) open.push_back(std::move(c));
  }
  for (auto& c : open) c->stop();
}

}  // namespace labhost::server
