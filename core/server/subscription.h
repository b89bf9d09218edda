// subscription.h: one session's subscription to a topic of a service: its queue of events and
// their delivery as `event` frames (docs/protocol.md, "subscribe, unsubscribe, event").
//
// The driver's thread hands each publication to on_event, which only queues it (dropping the
// oldest beyond `queue` events or `queue_bytes`, and counting them) and, when nothing is being
// written, posts a delivery to the daemon's io_context. A delivery writes one event frame whose
// value is the publication's shared bytes; the next one starts only when that frame has left
// whole. So a subscriber that reads slowly, or not at all, costs the daemon its queue and one
// frame, and never holds up the driver, the other subscribers, or anything else.
// The subscription belongs to its session: while the session has no connection (a broken
// link, before a resume) events queue and drop; attach() restarts delivery on the new one.
// Thread-safety: every member is safe from any thread (mutex_).
#ifndef LABHOST_SERVER_SUBSCRIPTION_H
#define LABHOST_SERVER_SUBSCRIPTION_H

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "../host/host_config.h"
#include "../plugin/event_hub.h"
#include "service_stats.h"

namespace labhost::server {

class connection;

/// The largest encoded value a driver of this daemon may publish: what fits in one event frame.
std::size_t event_value_limit(const host::daemon_config& config) noexcept;

class subscription : public plugin::event_subscriber, public std::enable_shared_from_this<subscription> {
 public:
  struct settings {
    std::uint32_t id = 0;  // unique in its session; the request id of its event frames
    std::string service;
    std::string topic;
    std::uint32_t topic_index = 0;
    std::size_t queue = 16;               // events kept at most
    std::size_t queue_bytes = 16u << 20;  // bytes kept at most (the newest event is always kept)
    double max_rate = 0;                  // events per second at most; 0: no limit
    service_stats* stats = nullptr;       // the service's figures (outlives the subscription)
  };

  subscription(boost::asio::io_context& io, settings s, std::shared_ptr<plugin::event_hub> hub);
  ~subscription() override;

  const settings& config() const noexcept { return settings_; }

  void on_event(const std::shared_ptr<const plugin::published_event>& event) override;
  bool ready() const override;

  /// Delivers events to `c` from now on (after welcome, on hello or resume); null stops
  /// delivery until the next attach (the link broke).
  void attach(const std::shared_ptr<connection>& c);
  /// Ends the subscription: no event is written after this returns. Idempotent.
  void stop();

  /// Events dropped so far, and delivered whole (for tests and logs).
  std::uint64_t dropped_total() const;
  std::uint64_t delivered_total() const;

 private:
  /// Posts deliver() when an event can be written now. REQUIRES: mutex_ held.
  void schedule_locked();
  /// Writes the next event, if any, and if the rate allows (else arms the rate timer).
  void deliver();
  /// The frame of `generation` has left whole: the next may go.
  void frame_sent(std::uint64_t generation);

  boost::asio::io_context& io_;
  const settings settings_;
  std::weak_ptr<plugin::event_hub> hub_;
  const std::chrono::steady_clock::duration min_interval_;  // from max_rate; zero: none

  mutable std::mutex mutex_;  // guards everything below
  std::deque<std::shared_ptr<const plugin::published_event>> queue_;
  std::size_t queued_bytes_ = 0;
  std::uint64_t dropped_since_delivery_ = 0;
  std::uint64_t dropped_total_ = 0;
  std::uint64_t delivered_total_ = 0;
  std::weak_ptr<connection> connection_;
  std::uint64_t generation_ = 0;  // bumped by attach(): a late frame_sent of an old link is ignored
  bool in_flight_ = false;        // an event frame is being written
  bool delivery_posted_ = false;  // deliver() is queued on the io_context
  bool stopped_ = false;
  std::chrono::steady_clock::time_point last_delivery_{};
  boost::asio::steady_timer rate_timer_;  // armed while max_rate holds the next event back
  bool rate_timer_armed_ = false;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_SUBSCRIPTION_H
