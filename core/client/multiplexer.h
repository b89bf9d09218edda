// multiplexer.h: several requests in flight on one transport, matched by request id: the
// middle layer of the client library (docs/clients.md).
//
// Leader/follower on one blocking socket: a caller waiting for its reply either becomes the
// reader (reads frames and hands each to its waiter) or sleeps until a reader hands it its
// reply. A lone sequential caller thus reads its own reply: no thread hop, no extra wakeup.
// When the link breaks, every waiting request fails with the error it broke with; the
// session above decides whether to reconnect (replace()).
// Frames that answer no waiting request go elsewhere: `event` frames to the event handler,
// the `error` of a oneway call (sent without waiting) to the oneway-failure handler. Both
// run on the reading thread, with no lock held. A session with asynchronous work keeps a
// thread reading (pump()), so that replies and events arrive with nobody waiting.
// Thread-safety: every member may be called from any thread.
#ifndef LABHOST_CLIENT_MULTIPLEXER_H
#define LABHOST_CLIENT_MULTIPLEXER_H

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <set>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "../protocol/frame.h"
#include "labhost/errors.h"
#include "labhost/value.h"
#include "transport.h"

namespace labhost::client_detail {

/// A reply frame, as the reader handed it over.
struct reply_frame {
  protocol::message_type type = protocol::message_type::error;
  std::vector<std::uint8_t> payload;
  // A result that is one typed array, or an event's value that is one, read straight into
  // place; an event's payload then holds only its envelope (protocol::event_envelope_size).
  std::optional<value> array;
};

/// A request's slot in the table of waiting replies (guarded by the multiplexer's mutex).
struct waiting_reply {
  bool done = false;
  reply_frame frame;
  std::optional<error> failure;  // the link broke while it waited
  std::uint64_t generation = 0;  // the link it was registered on
};

class multiplexer {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  explicit multiplexer(std::uint32_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

  /// A request on its way: what wait() needs.
  struct ticket {
    std::uint32_t id = 0;
    std::shared_ptr<waiting_reply> reply;
  };
  /// Why a request did not go out: the error, and whether any byte of it had been written
  /// (then it may run; if not, it surely will not, and may be sent again on a new link).
  struct send_failure {
    error failure;
    bool sent_any = false;
  };

  /// Registers a request and writes its frame (request id filled in). A failed write breaks
  /// the link for everyone. A oneway request (`expect_reply` false) is not registered: only
  /// its error may come back, to the oneway-failure handler.
  result<ticket, send_failure> send(protocol::message_type type, const value& payload, bool expect_reply = true);
  /// Forgets a request nobody will wait for any more (a timed-out asynchronous call).
  void abandon(const ticket& t);
  /// The reply of a request, or the error its link broke with, once there is one; never waits.
  std::optional<result<reply_frame>> take_if_done(const ticket& t);

  /// Where event frames go (id = subscription id), and the errors of oneway calls. Set before
  /// any frame is read; called on the reading thread, unlocked.
  void on_event(std::function<void(std::uint32_t id, reply_frame frame)> handler) { event_handler_ = std::move(handler); }
  /// Where the array of an event of subscription `id` is read into: a buffer given back by the
  /// program (subscription::recycle), so that a stream of frames allocates, zero-fills and
  /// faults no new memory. Returns an empty vector when it has none. Called on the reading
  /// thread, unlocked.
  void on_event_buffer(std::function<std::vector<std::uint8_t>(std::uint32_t id, std::size_t size)> source) {
    event_buffer_source_ = std::move(source);
  }
  void on_oneway_failure(std::function<void(const error&)> handler) { oneway_handler_ = std::move(handler); }

  /// Reads one frame when nobody else reads (waiting at most until `deadline` for it to
  /// begin; a frame that began is read whole), else waits until the reader hands something
  /// over or `deadline`. False when the link is broken.
  bool pump(time_point deadline);

  /// Waits for a sent request's reply, as reader or follower, until `deadline` when set
  /// (`allowed` is that wait, for the message). Throws remote_error: timeout, or the error
  /// the link broke with. A deadline that passes inside a frame drops the link.
  reply_frame wait(ticket t, std::optional<time_point> deadline, std::chrono::milliseconds allowed, bool busy_poll);

  /// Fails every waiting request with `e` and stops the reader; later sends fail with `e`
  /// until replace(). `abortive`: see transport::shutdown. Idempotent (the first error stays).
  void break_link(const error& e, bool abortive);
  /// The error the link broke with, or nothing while it is up.
  std::optional<error> broken() const;
  /// Replaces the link by a new one, once the old one's reader has stopped: requests go on
  /// the new one; nothing registered before is ever written there.
  void replace(transport link);
  /// Keeps `e` as the reason the link is down, when it is down (a refusal while reconnecting).
  void mark_broken(const error& e);
  /// True when the link is idle (nothing in flight or being read, nothing sent for 5 ms) and
  /// the daemon has closed it meanwhile.
  bool idle_link_closed();
  /// When a frame was last written (steady clock).
  time_point last_sent() const noexcept { return time_point(time_point::duration(last_sent_.load())); }

  /// Writes a frame outside the request/reply scheme (goodbye), then TLS's close_notify.
  /// Errors are ignored: a link that is gone needs no goodbye.
  void send_goodbye(const std::vector<std::uint8_t>& frame);

 private:
  struct read_outcome {
    std::optional<error> failure;
    bool inside_frame = false;  // part of a frame had been read: the stream is out of step
  };
  /// Reads one frame and hands it to its waiter. Called by the reader only, unlocked. With
  /// `deadline_to_begin`, the deadline bounds only the wait for the frame's first byte.
  read_outcome read_one(std::optional<time_point> deadline, bool busy_poll, bool deadline_to_begin = false);
  void break_locked(const error& e, bool abortive);  // REQUIRES: state_mutex_ held

  const std::uint32_t max_frame_bytes_;
  transport link_;            // replaced under write_mutex_ and state_mutex_
  std::mutex write_mutex_;    // serializes whole frames on the link
  mutable std::mutex state_mutex_;  // guards everything below but the atomics
  std::condition_variable state_changed_;
  std::map<std::uint32_t, std::shared_ptr<waiting_reply>> pending_;
  bool reader_active_ = false;
  std::optional<error> broken_;  // set once the link is unusable
  std::uint32_t next_id_ = 1;
  std::atomic<std::uint64_t> generation_{0};  // bumped when link_ is replaced
  std::atomic<bool> link_broken_{false};     // broken_ is set: nothing more is written
  std::atomic<time_point::rep> last_sent_{0};
  std::function<void(std::uint32_t, reply_frame)> event_handler_;
  std::function<std::vector<std::uint8_t>(std::uint32_t, std::size_t)> event_buffer_source_;
  std::function<void(const error&)> oneway_handler_;
  std::deque<std::uint32_t> oneway_ids_;  // the latest oneway requests, oldest first (state_mutex_)
  std::set<std::uint32_t> oneway_set_;    // the same, to look up (state_mutex_)
};

}  // namespace labhost::client_detail

#endif  // LABHOST_CLIENT_MULTIPLEXER_H
