#include "event_hub.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "../protocol/block_cache.h"

namespace labhost::plugin {

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Room for one encoded value, as a shared block (a large one from the block cache).
std::shared_ptr<std::uint8_t> new_value_block(std::size_t size) {
  protocol::cached_block block = protocol::take_block(std::max<std::size_t>(size, 1));
  const protocol::block_return give_back = block.get_deleter();
  return std::shared_ptr<std::uint8_t>(block.release(), give_back);
}

/// A value lent by reserve, until commit.
struct reserved_value {
  std::uint32_t topic;
  std::shared_ptr<std::uint8_t> block;
  std::size_t size;
};

}  // namespace

event_hub::event_hub(std::vector<topic_description> topics, std::size_t max_value_bytes)
    : topics_(std::move(topics)),
      max_value_bytes_(max_value_bytes),
      subscribers_(topics_.size()),
      seq_(topics_.size(), 0) {
  abi_.context = this;
  abi_.demand = &event_hub::demand;
  abi_.publish = &event_hub::publish;
  abi_.reserve = &event_hub::reserve;
  abi_.commit = &event_hub::commit;
}

int event_hub::topic_index(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < topics_.size(); ++i)
    if (topics_[i].name == name) return static_cast<int>(i);
  return -1;
}

void event_hub::add(std::uint32_t topic, std::shared_ptr<event_subscriber> subscriber) {
  std::lock_guard lock(mutex_);
  if (closed_ || topic >= subscribers_.size()) return;
  subscribers_[topic].push_back(std::move(subscriber));
}

void event_hub::remove(const event_subscriber* subscriber) {
  std::lock_guard lock(mutex_);
  for (auto& list : subscribers_)
    std::erase_if(list, [&](const auto& s) { return s.get() == subscriber; });
}

void event_hub::close() {
  std::vector<std::vector<std::shared_ptr<event_subscriber>>> gone;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    gone.swap(subscribers_);
  }
  // `gone` is released here, outside the lock: a subscription's destructor may take its own.
}

std::uint64_t event_hub::published(std::uint32_t topic) const {
  std::lock_guard lock(mutex_);
  return topic < seq_.size() ? seq_[topic] : 0;
}

bool event_hub::deliver(std::uint32_t topic, std::shared_ptr<std::uint8_t> value, std::size_t size) {
  auto event = std::make_shared<published_event>();
  event->topic = topic;
  event->time = unix_now();
  event->value = std::move(value);
  event->size = size;
  // Handed out under the lock, so that events reach each subscriber in seq order. on_event
  // only queues: it never blocks, and never calls back into the hub.
  std::lock_guard lock(mutex_);
  if (closed_ || topic >= seq_.size()) return false;
  event->seq = ++seq_[topic];
  const std::shared_ptr<const published_event> shared = std::move(event);
  for (const auto& s : subscribers_[topic]) s->on_event(shared);
  return true;
}

void event_hub::demand(void* context, std::uint32_t topic, std::uint32_t* subscribers,
                       std::uint32_t* ready) noexcept {
  auto* hub = static_cast<event_hub*>(context);
  std::uint32_t all = 0, can_take = 0;
  {
    std::lock_guard lock(hub->mutex_);  // std::mutex::lock does not fail on Linux for a valid mutex
    if (!hub->closed_ && topic < hub->subscribers_.size()) {
      for (const auto& s : hub->subscribers_[topic]) {
        ++all;
        if (s->ready()) ++can_take;
      }
    }
  }
  if (subscribers != nullptr) *subscribers = all;
  if (ready != nullptr) *ready = can_take;
}

int event_hub::publish(void* context, std::uint32_t topic, const std::uint8_t* value, std::size_t size) noexcept {
  auto* hub = static_cast<event_hub*>(context);
  try {
    if (size == 0 || value == nullptr || size > hub->max_value_bytes_ || topic >= hub->topics_.size()) return 1;
    auto block = new_value_block(size);
    std::memcpy(block.get(), value, size);
    return hub->deliver(topic, std::move(block), size) ? 0 : 1;
  } catch (...) {
    return 1;  // no memory: refused, never an exception into the driver
  }
}

std::uint8_t* event_hub::reserve(void* context, std::uint32_t topic, std::size_t size, std::size_t aligned_at,
                                 void** handle) noexcept {
  auto* hub = static_cast<event_hub*>(context);
  if (handle != nullptr) *handle = nullptr;
  try {
    if (handle == nullptr || size == 0 || size > hub->max_value_bytes_ || topic >= hub->topics_.size())
      return nullptr;
    // Blocks are 16-byte aligned: start the value `shift` bytes in, so that its byte
    // `aligned_at` lands on a 16-byte boundary. The shared pointer keeps the whole block.
    const std::size_t shift = (16 - aligned_at % 16) % 16;
    auto block = new_value_block(size + shift);
    std::shared_ptr<std::uint8_t> value(block, block.get() + shift);
    auto* lent = new reserved_value{topic, std::move(value), size};
    *handle = lent;
    return lent->block.get();
  } catch (...) {
    return nullptr;
  }
}

int event_hub::commit(void* context, void* handle, int publish) noexcept {
  auto* hub = static_cast<event_hub*>(context);
  std::unique_ptr<reserved_value> lent(static_cast<reserved_value*>(handle));
  if (!lent) return 1;
  if (!publish) return 0;
  try {
    return hub->deliver(lent->topic, std::move(lent->block), lent->size) ? 0 : 1;
  } catch (...) {
    return 1;
  }
}

}  // namespace labhost::plugin
