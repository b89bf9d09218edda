// event_hub.h: the host side of a driver instance's events (labhost_events, driver ABI 1.2).
//
// A driver publishes a value on one of its topics; the hub encodes nothing (the driver gives
// an encoded value), numbers it, stamps its time, and hands the one shared copy to every
// subscriber of that topic. Subscribers decide what to keep (server/subscription.h): the hub
// never waits for them, so a driver's publish returns at once whatever its subscribers do.
// Lifetime: owned by its driver_instance (shared with subscriptions); the driver may publish
// from any thread until close() (called when the instance closes), after which every
// publication is refused.
// Thread-safety: every member is safe from any thread (mutex_).
#ifndef LABHOST_PLUGIN_EVENT_HUB_H
#define LABHOST_PLUGIN_EVENT_HUB_H

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "labhost/description.h"
#include "labhost/driver_abi.h"

namespace labhost::plugin {

/// One publication: the encoded value, shared by every subscriber's queue.
struct published_event {
  std::uint32_t topic = 0;
  std::uint64_t seq = 0;  // its number on its topic, from 1
  double time = 0;        // Unix time, seconds
  std::shared_ptr<std::uint8_t> value;  // the encoded value
  std::size_t size = 0;
};

/// What receives a topic's publications (a client's subscription).
class event_subscriber {
 public:
  virtual ~event_subscriber() = default;
  /// A new publication. Called on the publishing driver's thread: must not block.
  virtual void on_event(const std::shared_ptr<const published_event>& event) = 0;
  /// True when it could take another event without dropping one.
  virtual bool ready() const = 0;
};

class event_hub {
 public:
  /// `max_value_bytes`: larger publications are refused (they could not be sent).
  event_hub(std::vector<topic_description> topics, std::size_t max_value_bytes);
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;

  /// What the driver publishes through; valid as long as the hub.
  const labhost_events* abi() const noexcept { return &abi_; }
  const std::vector<topic_description>& topics() const noexcept { return topics_; }
  /// Index of a topic by name, or -1.
  int topic_index(std::string_view name) const noexcept;

  void add(std::uint32_t topic, std::shared_ptr<event_subscriber> subscriber);
  void remove(const event_subscriber* subscriber);
  /// Refuses every publication from now on and forgets the subscribers (the instance closed).
  void close();

  /// Publications so far on `topic` (for tests and describe).
  std::uint64_t published(std::uint32_t topic) const;

 private:
  // The labhost_events functions: never an exception into the driver.
  static void demand(void* context, std::uint32_t topic, std::uint32_t* subscribers, std::uint32_t* ready) noexcept;
  static int publish(void* context, std::uint32_t topic, const std::uint8_t* value, std::size_t size) noexcept;
  static std::uint8_t* reserve(void* context, std::uint32_t topic, std::size_t size, std::size_t aligned_at,
                               void** handle) noexcept;
  static int commit(void* context, void* handle, int publish) noexcept;

  /// Numbers, stamps and hands out one encoded value. False when refused.
  bool deliver(std::uint32_t topic, std::shared_ptr<std::uint8_t> value, std::size_t size);

  const std::vector<topic_description> topics_;
  const std::size_t max_value_bytes_;
  labhost_events abi_{};

  mutable std::mutex mutex_;  // guards subscribers_, seq_, closed_
  std::vector<std::vector<std::shared_ptr<event_subscriber>>> subscribers_;  // by topic
  std::vector<std::uint64_t> seq_;                                            // by topic
  bool closed_ = false;
};

}  // namespace labhost::plugin

#endif  // LABHOST_PLUGIN_EVENT_HUB_H
