#include "session_table.h"

#include <cstdio>

namespace labhost::server {

std::string session_table::new_token() {
  std::string token;
  for (int i = 0; i < 4; ++i) {
    char chunk[9];
    std::snprintf(chunk, sizeof chunk, "%08x", static_cast<unsigned>(random_()));
    token += chunk;
  }
  return token;
}

std::shared_ptr<session> session_table::open(service::session_info info) {
  std::lock_guard lock(mutex_);
  info.token = new_token();
  auto s = std::make_shared<session>(std::move(info));
  sessions_[s->token()] = s;
  return s;
}

std::shared_ptr<session> session_table::find(const std::string& token) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(token);
  return it == sessions_.end() ? nullptr : it->second;
}

void session_table::remove(const std::string& token) {
  std::lock_guard lock(mutex_);
  sessions_.erase(token);
}

std::size_t session_table::count() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::vector<std::shared_ptr<session>> session_table::silent_for(std::chrono::milliseconds lease) {
  const auto now = session::clock::now();
  std::lock_guard lock(mutex_);
  const auto since_last_sweep = now - last_sweep_;
  last_sweep_ = now;
  std::vector<std::shared_ptr<session>> silent;
  if (since_last_sweep > lease / 2) {
    for (auto& [token, s] : sessions_) s->touch();
    return silent;
  }
  const auto deadline = now - lease;
  for (auto& [token, s] : sessions_)
    if (s->last_seen() < deadline && !s->has_calls_in_flight()) silent.push_back(s);
  return silent;
}

}  // namespace labhost::server
