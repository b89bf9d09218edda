#include "connection_registry.h"

#include <vector>

#include "connection.h"

namespace labhost::server {

void connection_registry::add(const std::shared_ptr<connection>& c) {
  std::lock_guard lock(mutex_);
  connections_[c.get()] = c;
}

void connection_registry::remove(const connection* c) {
  std::lock_guard lock(mutex_);
  connections_.erase(c);
}

std::size_t connection_registry::size() const {
  std::lock_guard lock(mutex_);
  return connections_.size();
}

void connection_registry::stop_all() {
  std::vector<std::shared_ptr<connection>> open;
  {
    std::lock_guard lock(mutex_);
    for (auto& [key, weak] : connections_)
      if (auto c = weak.lock()) open.push_back(std::move(c));
  }
  for (auto& c : open) c->stop();  // outside the mutex: a stopping connection removes itself
}

}  // namespace labhost::server
