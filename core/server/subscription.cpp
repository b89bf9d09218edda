#include "subscription.h"

#include <bit>

#include <boost/asio/post.hpp>

#include "../protocol/frame.h"
#include "../protocol/frame_buffer.h"
#include "../protocol/messages.h"
#include "connection.h"
#include "labhost/value_codec.h"

namespace labhost::server {

namespace asio = boost::asio;

namespace {

/// The header and the envelope of one event frame; the value's bytes follow as its tail.
std::vector<std::uint8_t> event_head(std::uint32_t id, const plugin::published_event& e, std::uint64_t dropped) {
  std::vector<std::uint8_t> head(protocol::header_size);
  head.reserve(protocol::header_size + protocol::event_envelope_size);
  protocol::event_message envelope;
  envelope.subscription = id;
  envelope.seq = static_cast<std::int64_t>(e.seq);
  envelope.dropped = static_cast<std::int64_t>(dropped);
  envelope.time = e.time;
  protocol::write_event_envelope(envelope, head);
  protocol::frame_header h;
  h.type = protocol::message_type::event;
  h.request_id = id;
  h.payload_size = static_cast<std::uint32_t>(head.size() - protocol::header_size + e.size);
  protocol::write_header(h, std::span<std::uint8_t, protocol::header_size>(head.data(), protocol::header_size));
  return head;
}

}  // namespace

std::size_t event_value_limit(const host::daemon_config& config) noexcept {
  return config.max_frame_bytes - protocol::event_envelope_size;
}

subscription::subscription(asio::io_context& io, settings s, std::shared_ptr<plugin::event_hub> hub)
    : io_(io),
      settings_(std::move(s)),
      hub_(hub),
      min_interval_(settings_.max_rate > 0 ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                 std::chrono::duration<double>(1.0 / settings_.max_rate))
                                           : std::chrono::steady_clock::duration::zero()),
      rate_timer_(io) {}

subscription::~subscription() = default;

void subscription::on_event(const std::shared_ptr<const plugin::published_event>& event) {
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  queue_.push_back(event);
  queued_bytes_ += event->size;
  // Oldest first out: beyond the count, or beyond the bytes while older events remain.
  while (queue_.size() > settings_.queue || (queued_bytes_ > settings_.queue_bytes && queue_.size() > 1)) {
    queued_bytes_ -= queue_.front()->size;
    queue_.pop_front();
    ++dropped_since_delivery_;
    ++dropped_total_;
    if (settings_.stats) settings_.stats->event_dropped();
  }
  schedule_locked();
}

bool subscription::ready() const {
  std::lock_guard lock(mutex_);
  return !stopped_ && queue_.size() < settings_.queue && queued_bytes_ < settings_.queue_bytes;
}

void subscription::attach(const std::shared_ptr<connection>& c) {
  std::lock_guard lock(mutex_);
  connection_ = c;
  ++generation_;
  if (in_flight_) {
    // The frame on the old link may not have reached the client: counted as dropped, so that
    // the next event says so (the client may have got it after all: then `dropped` overstates
    // by one, never understates).
    ++dropped_since_delivery_;
    ++dropped_total_;
    if (settings_.stats) settings_.stats->event_dropped();
  }
  in_flight_ = false;
  schedule_locked();
}

void subscription::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    connection_.reset();
    if (rate_timer_armed_) rate_timer_.cancel();
  }
  if (auto hub = hub_.lock()) hub->remove(this);
}

std::uint64_t subscription::dropped_total() const {
  std::lock_guard lock(mutex_);
  return dropped_total_;
}

std::uint64_t subscription::delivered_total() const {
  std::lock_guard lock(mutex_);
  return delivered_total_;
}

void subscription::schedule_locked() {
  if (stopped_ || in_flight_ || delivery_posted_ || rate_timer_armed_ || queue_.empty() || connection_.expired())
    return;
  delivery_posted_ = true;
  // Never on the driver's thread: writing a frame is the daemon's work.
  asio::post(io_, [self = shared_from_this()] { self->deliver(); });
}

void subscription::deliver() {
  std::shared_ptr<connection> target;
  protocol::frame_buffer frame;
  {
    std::lock_guard lock(mutex_);
    delivery_posted_ = false;
    if (stopped_ || in_flight_ || queue_.empty()) return;
    target = connection_.lock();
    if (!target) return;
    const auto now = std::chrono::steady_clock::now();
    if (min_interval_.count() > 0 && now < last_delivery_ + min_interval_) {
      // Too soon for max_rate: wait, the events stay queued (and drop, oldest first).
      rate_timer_armed_ = true;
      rate_timer_.expires_at(last_delivery_ + min_interval_);
      rate_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        auto self = weak.lock();
        if (!self) return;
        std::lock_guard relock(self->mutex_);
        self->rate_timer_armed_ = false;
        if (!ec) self->schedule_locked();
      });
      return;
    }
    auto event = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= event->size;
    frame = protocol::frame_buffer::with_shared_tail(event_head(settings_.id, *event, dropped_since_delivery_),
                                                     event->value, event->size);
    dropped_since_delivery_ = 0;
    last_delivery_ = now;
    in_flight_ = true;
    frame.on_sent([weak = weak_from_this(), generation = generation_] {
      if (auto self = weak.lock()) self->frame_sent(generation);
    });
  }
  target->send(std::move(frame));
}

void subscription::frame_sent(std::uint64_t generation) {
  std::lock_guard lock(mutex_);
  if (generation != generation_) return;
  in_flight_ = false;
  ++delivered_total_;
  if (settings_.stats) settings_.stats->event_delivered();
  schedule_locked();
}

}  // namespace labhost::server
