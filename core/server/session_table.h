// session_table.h: a daemon's live sessions by token, and which of them have gone silent.
// Thread-safety: every member is safe from any thread (mutex_).
#ifndef LABHOST_SERVER_SESSION_TABLE_H
#define LABHOST_SERVER_SESSION_TABLE_H

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "../service/session_info.h"
#include "session.h"

namespace labhost::server {

class session_table {
 public:
  /// A new session for `info`, under a fresh unguessable token (32 hex digits).
  std::shared_ptr<session> open(service::session_info info);
  /// The live session with this token, or null.
  std::shared_ptr<session> find(const std::string& token);
  /// Forgets a session (it ended).
  void remove(const std::string& token);
  /// Live sessions now.
  std::size_t count() const;

  /// The sessions that showed no sign of life for `lease` and wait on no call: they are to
  /// end. Meant to be asked periodically; when this daemon itself was not running for half a
  /// lease since the last time (a long call on a multiplexed daemon, a stopped process), the
  /// clients' signs of life may be waiting unread: everyone gets a new lease instead.
  std::vector<std::shared_ptr<session>> silent_for(std::chrono::milliseconds lease);

 private:
  std::string new_token();  // REQUIRES: mutex_ held

  mutable std::mutex mutex_;  // guards everything below
  std::map<std::string, std::shared_ptr<session>, std::less<>> sessions_;
  std::random_device random_;
  session::clock::time_point last_sweep_ = session::clock::now();
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_SESSION_TABLE_H
