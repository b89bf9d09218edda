// connection_registry.h: a daemon's open connections, counted for max_connections and
// closed together at shutdown. Holds weak references: a connection lives by its handlers.
// Thread-safety: every member is safe from any thread (mutex_).
#ifndef LABHOST_SERVER_CONNECTION_REGISTRY_H
#define LABHOST_SERVER_CONNECTION_REGISTRY_H

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

namespace labhost::server {

class connection;

class connection_registry {
 public:
  void add(const std::shared_ptr<connection>& c);
  void remove(const connection* c);
  std::size_t size() const;
  /// Stops every open connection (their pending replies are dropped).
  void stop_all();

 private:
  mutable std::mutex mutex_;  // guards connections_
  std::map<const connection*, std::weak_ptr<connection>> connections_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_CONNECTION_REGISTRY_H
