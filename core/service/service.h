// service.h: one named service of a daemon: a driver plugin, its instances, its lock.
//
// The service resolves a call's keyword arguments against the method's parameter names,
// checks the argument count, enforces the lock, picks the driver instance for the instance
// mode (single: one for the service, opened at start; session: one per session, created at
// its first call and closed when it ends; percall: one per call), and invokes the driver.
// A service whose plugin did not load or whose instrument did not open stays in the daemon
// as unavailable, with the reason, so the daemon keeps serving its other services.
//
// Thread-safety: call(), end_session() and close() REQUIRE the caller to serialize them (the
// daemon runs them on the service's strand), so driver code need not be thread-safe. The
// lock operations and describe() are safe from any thread (lock_mutex_).
#ifndef LABHOST_SERVICE_SERVICE_H
#define LABHOST_SERVICE_SERVICE_H

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../host/host_config.h"
#include "../plugin/plugin_library.h"
#include "labhost/description.h"
#include "labhost/errors.h"
#include "labhost/value.h"
#include "session_info.h"

namespace labhost::service {

class service {
 public:
  /// Loads the plugin and, for single-instance services, opens the instrument. Never throws
  /// for a driver problem: the service is then unavailable and says why. Its drivers may
  /// publish values of at most `max_event_bytes` (encoded).
  service(host::service_config config, const std::filesystem::path& plugin_dir, std::size_t max_event_bytes);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  const std::string& name() const noexcept { return config_.name; }
  const host::service_config& config() const noexcept { return config_; }
  /// ready: serving. waiting: the instrument did not open (yet); the daemon retries.
  /// unavailable: the plugin was refused; nothing will change until the daemon restarts.
  enum class state { ready, waiting, unavailable };
  state current_state() const;
  bool ready() const { return current_state() == state::ready; }
  std::string unavailable_reason() const;

  /// Tries again to open a waiting single-instance service; true once it is ready.
  /// REQUIRES: serialized with call()/close().
  bool try_open();

  service_description describe(bool with_methods) const;

  /// Calls `method` for `caller`. On success the encoded result is appended to `out`.
  /// Errors: locked / locked_out (lock held by another session, or taken from this one by
  /// force), no_such_method, bad_arguments, driver_error, service_unavailable.
  /// REQUIRES: serialized with other call()/end_session()/close().
  std::optional<error> call(const session_info& caller, const std::string& method,
                            const list& args, const map& kwargs, protocol::frame_buffer& out,
                            std::size_t max_result);

  /// Closes and frees the session instance of `token`, if any. REQUIRES: serialized.
  void end_session(const std::string& token);

  /// The events of the instance `caller` would call (its session's, in session mode; the
  /// service's, in single mode): what a subscription of `caller` attaches to. Creates the
  /// session instance when needed. Errors: no_such_topic (a percall service, or a driver
  /// without topics), service_unavailable. REQUIRES: serialized.
  result<std::shared_ptr<plugin::event_hub>> events_for(const session_info& caller);
  /// The service's topics (empty when its plugin was refused). Thread-safe.
  std::vector<topic_description> topics() const;

  /// Closes every driver instance (the hardware is released). REQUIRES: serialized.
  void close();

  // --- Locks. Thread-safe. A lock belongs to a session, identified by its token.

  enum class lock_result { granted, already_yours, held_by_other };
  lock_result try_lock(const session_info& who);
  /// Errors: not_lock_owner when `token` does not hold the lock (or nobody does).
  std::optional<error> unlock(const std::string& token);
  /// Releases whoever holds the lock; their next call gets locked_out. The former holder.
  std::optional<lock_holder> force_unlock();
  /// Releases the lock if `token` holds it (session ended); true when it did.
  bool release_if_held_by(const std::string& token);
  std::optional<lock_holder> holder() const;
  /// The error a call from `token` gets because of the lock, if any (consumes a locked_out).
  std::optional<error> lock_refusal(const std::string& token);

 private:
  result<std::vector<std::uint8_t>> resolve_arguments(int method_index, const list& args,
                                                      const map& kwargs) const;
  result<plugin::driver_instance*> instance_for(const session_info& caller);

  host::service_config config_;
  const std::size_t max_event_bytes_;
  std::shared_ptr<const plugin::plugin_library> library_;  // null when the plugin was refused
  std::unique_ptr<plugin::driver_instance> single_;        // single mode
  std::map<std::string, std::unique_ptr<plugin::driver_instance>> per_session_;  // session mode
  mutable std::mutex state_mutex_;  // guards state_, reason_ (read by describe from any thread)
  state state_ = state::ready;
  std::string reason_;  // why not ready; empty when ready

  mutable std::mutex lock_mutex_;  // guards lock_, forced_out_
  std::optional<lock_holder> lock_;
  std::set<std::string> forced_out_;  // sessions whose lock was force-released, not yet told
};

}  // namespace labhost::service

#endif  // LABHOST_SERVICE_SERVICE_H
