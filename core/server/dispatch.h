// dispatch.h: the requests of an open session, each answered by exactly one reply through
// its connection: describe, call (run on its service's strand; a oneway call is answered only
// when it fails), lock (possibly waiting in line), unlock, lock_status, subscribe (on the
// service's strand) and unsubscribe. A version-1 session gets its results as version 1 can
// take them (protocol/value_versions.h). Bad requests get typed errors (no_such_service, bad_message,
// not_lockable, busy, ...), never an exception.
// Thread-safety: handle() on the read chain of its connection; the calls it starts run on
// their services' strands and reply from there.
#ifndef LABHOST_SERVER_DISPATCH_H
#define LABHOST_SERVER_DISPATCH_H

#include <cstdint>
#include <memory>
#include <string>

#include "../protocol/frame.h"
#include "../protocol/frame_buffer.h"
#include "../protocol/messages.h"
#include "labhost/value.h"

namespace labhost::server {

class connection;
class daemon_state;
class session;
struct service_slot;

class dispatcher {
 public:
  dispatcher(connection& owner, daemon_state& state) : owner_(owner), state_(state) {}

  /// Handles one request of `caller`'s session (null before hello: bad_message).
  /// `payload_bytes`: the request's payload size, for the figures.
  void handle(protocol::message_type type, std::uint32_t request_id, value payload, std::size_t payload_bytes,
              const std::shared_ptr<session>& caller);

 private:
  void describe(std::uint32_t request_id, const value& payload);
  void call(std::uint32_t request_id, value payload, std::size_t payload_bytes, const std::shared_ptr<session>& caller);
  /// Runs a call on its service (REQUIRES: on the service's strand); the reply frame, and its
  /// error in `failure`.
  protocol::frame_buffer run_call(std::uint32_t request_id, service_slot& slot, const session& caller,
                                  const protocol::call_message& call, std::optional<error>& failure);
  /// A finished call in the recent errors (when it failed) and the journal; takes its arguments.
  void record_call(service_slot& slot, session& caller, protocol::call_message& call,
                   const std::optional<error>& failure);
  void lock(std::uint32_t request_id, const value& payload, const std::shared_ptr<session>& caller);
  void unlock(std::uint32_t request_id, const value& payload, const session& caller);
  void lock_status(std::uint32_t request_id, const value& payload, const session& caller);
  void subscribe(std::uint32_t request_id, const value& payload, const std::shared_ptr<session>& caller);
  void unsubscribe(std::uint32_t request_id, const value& payload, session& caller);
  /// The service a request names, or null after replying no_such_service.
  service_slot* service_or_reply(std::uint32_t request_id, const std::string& name);
  /// The same, also replying not_lockable (and returning null) on a shared daemon.
  service_slot* lockable_service_or_reply(std::uint32_t request_id, const std::string& name);

  connection& owner_;
  daemon_state& state_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_DISPATCH_H
