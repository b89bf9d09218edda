#include "multiplexer.h"

#include <array>
#include <cstring>
#include <span>

#include "../protocol/messages.h"
#include "labhost/value_codec.h"

namespace labhost::client_detail {

namespace {

/// What the first bytes of a payload say about it being one typed array.
struct array_start {
  std::size_t prefix = 0;       // bytes before the elements (a shape's dimensions included)
  bool whole_payload = false;   // the array's elements fill the rest of the payload exactly
  typed_array array;            // its type and shape, without elements
};

/// Looks at the start of a value (`head`: at least 6 bytes, or the whole prefix of a shaped
/// array once its size is known) that fills `value_size` bytes. A shaped array needs its
/// dimensions read first: `prefix` then says how many bytes that takes.
array_start one_array_prefix(std::span<const std::uint8_t> head, std::size_t value_size) {
  array_start start;
  const auto type = static_cast<element_type>(head[1]);
  const std::size_t size = element_size(type);
  if (size == 0 || type == element_type::boolean) return start;  // bool elements are checked by the decoder
  start.array.type = type;
  if (head[0] == static_cast<std::uint8_t>(value_kind::array)) {
    std::uint32_t count;
    std::memcpy(&count, head.data() + 2, 4);
    start.prefix = array_prefix_size(0);
    start.whole_payload = std::uint64_t{count} * size == value_size - start.prefix;
    return start;
  }
  const std::size_t ndim = head[2];
  if (head[0] != shaped_array_tag || ndim < 2 || ndim > max_array_dimensions) return start;
  start.prefix = array_prefix_size(ndim);
  if (head.size() < start.prefix || value_size < start.prefix) return start;  // dimensions not read yet
  std::uint64_t product = 1;
  start.array.shape.resize(ndim);
  for (std::size_t i = 0; i < ndim; ++i) {
    std::memcpy(&start.array.shape[i], head.data() + 3 + 4 * i, 4);
    product *= start.array.shape[i];
    if (product > value_size) product = value_size + 1;  // too many already: no overflow
  }
  start.whole_payload = product * size == value_size - start.prefix;
  return start;
}

}  // namespace

using protocol::message_type;

namespace {

constexpr auto idle_check_after = std::chrono::milliseconds(5);  // docs/clients.md, rule 5

[[noreturn]] void fail(errc code, std::string message) { throw remote_error(error{code, std::move(message)}); }

}  // namespace

result<multiplexer::ticket, multiplexer::send_failure> multiplexer::send(message_type type, const value& payload,
                                                                         bool expect_reply) {
  auto reply = std::make_shared<waiting_reply>();
  std::uint32_t id;
  {
    std::lock_guard lock(state_mutex_);
    if (broken_) return send_failure{*broken_, false};
    id = next_id_++;
    if (next_id_ == 0) next_id_ = 1;  // 0 is the daemon's, for connection-level errors
    reply->generation = generation_.load();
    if (expect_reply) {
      pending_[id] = reply;
    } else {
      // Kept a while, so that the error of a failed oneway call is recognised as one.
      constexpr std::size_t oneway_ids_kept = 4096;
      oneway_ids_.push_back(id);
      oneway_set_.insert(id);
      if (oneway_ids_.size() > oneway_ids_kept) {
        oneway_set_.erase(oneway_ids_.front());
        oneway_ids_.pop_front();
      }
    }
  }
  const auto frame = protocol::encode_frame(type, id, payload);
  transport::send_outcome outcome;
  {
    std::lock_guard lock(write_mutex_);
    // A request registered before the link was replaced or broke must not go out on a link
    // its caller was not told about.
    if (generation_.load() != reply->generation || link_broken_.load())
      outcome.failure = error{errc::connection_lost, "the connection broke before this request was sent"};
    else
      outcome = link_.send(frame);
    if (outcome.sent_any)
      last_sent_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }
  if (!outcome.failure) return ticket{id, std::move(reply)};
  std::lock_guard lock(state_mutex_);
  pending_.erase(id);
  if (generation_.load() == reply->generation) break_locked(*outcome.failure, true);
  return send_failure{broken_.value_or(*outcome.failure), outcome.sent_any};
}

void multiplexer::abandon(const ticket& t) {
  std::lock_guard lock(state_mutex_);
  pending_.erase(t.id);
}

std::optional<result<reply_frame>> multiplexer::take_if_done(const ticket& t) {
  std::lock_guard lock(state_mutex_);
  if (!t.reply->done) return std::nullopt;
  if (t.reply->failure) return result<reply_frame>(*t.reply->failure);
  return result<reply_frame>(std::move(t.reply->frame));
}

bool multiplexer::pump(time_point deadline) {
  std::unique_lock lock(state_mutex_);
  if (broken_) return false;
  if (reader_active_) {
    state_changed_.wait_until(lock, deadline);
    return !broken_;
  }
  reader_active_ = true;
  lock.unlock();
  auto outcome = read_one(deadline, false, true);
  lock.lock();
  reader_active_ = false;
  state_changed_.notify_all();
  if (outcome.failure && !(outcome.failure->code == errc::timeout && !outcome.inside_frame))
    break_locked(*outcome.failure, true);
  return !broken_;
}

reply_frame multiplexer::wait(ticket t, std::optional<time_point> deadline, std::chrono::milliseconds allowed,
                              bool busy_poll) {
  auto timed_out = [&] {
    pending_.erase(t.id);  // a reply that comes later is dropped
    fail(errc::timeout, "no reply within " + std::to_string(allowed.count()) + " ms");
  };
  std::unique_lock lock(state_mutex_);
  while (!t.reply->done) {
    if (deadline && std::chrono::steady_clock::now() >= *deadline) timed_out();
    if (reader_active_) {
      if (deadline)
        state_changed_.wait_until(lock, *deadline);
      else
        state_changed_.wait(lock);
      continue;
    }
    reader_active_ = true;
    lock.unlock();
    auto outcome = read_one(deadline, busy_poll);
    lock.lock();
    reader_active_ = false;
    state_changed_.notify_all();  // a follower takes over reading
    if (!outcome.failure) continue;
    if (outcome.failure->code == errc::timeout && !outcome.inside_frame) continue;  // between frames: intact
    if (outcome.failure->code == errc::timeout) {
      // The rest of the frame would be taken for a new one: the stream is out of step.
      break_locked(error{errc::connection_lost, "no complete reply in time: the link was dropped"}, true);
      if (!t.reply->failure) break;  // ours had come before
      timed_out();
    }
    break_locked(*outcome.failure, true);
  }
  if (t.reply->failure) throw remote_error(*t.reply->failure);
  return std::move(t.reply->frame);
}

multiplexer::read_outcome multiplexer::read_one(std::optional<time_point> deadline, bool busy_poll,
                                                bool deadline_to_begin) {
  std::array<std::uint8_t, protocol::header_size> header_bytes;
  std::size_t header_read = 0;
  if (auto e = link_.read_exact(header_bytes.data(), header_bytes.size(), deadline, busy_poll, &header_read)) {
    if (!(deadline_to_begin && e->code == errc::timeout && header_read > 0)) return {std::move(e), header_read > 0};
    // The frame has begun: the rest comes whatever the time.
    if (auto rest = link_.read_exact(header_bytes.data() + header_read, header_bytes.size() - header_read,
                                     std::nullopt, false))
      return {std::move(rest), true};
  }
  if (deadline_to_begin) deadline.reset();
  auto header = protocol::parse_header(header_bytes, max_frame_bytes_);
  if (!header) return {header.err(), true};
  reply_frame frame;
  frame.type = header->type;
  auto read_rest = [&](std::uint8_t* into, std::size_t size) { return link_.read_exact(into, size, deadline, busy_poll); };
  // A bulk result (a camera frame), or an event carrying one, is usually one typed array:
  // its elements are read straight into the array the caller gets, with no intermediate copy.
  // `value_at`: where the value starts in the payload (after an event's envelope).
  constexpr std::size_t flat_prefix = array_prefix_size(0);  // tag, element type, u32 count
  const std::size_t payload_size = header->payload_size;
  std::size_t value_at = 0;
  bool in_place_candidate = header->type == message_type::result && payload_size > flat_prefix;
  if (header->type == message_type::event && payload_size > protocol::event_envelope_size + flat_prefix) {
    frame.payload.resize(protocol::event_envelope_size);
    if (auto e = read_rest(frame.payload.data(), frame.payload.size())) return {std::move(e), true};
    value_at = protocol::event_envelope_size;
    in_place_candidate = protocol::read_event_envelope(frame.payload).has_value();
  }
  auto read_remaining = [&]() -> std::optional<error> {
    const std::size_t have = frame.payload.size();
    frame.payload.resize(payload_size);
    return read_rest(frame.payload.data() + have, payload_size - have);
  };
  if (in_place_candidate) {
    frame.payload.resize(value_at + flat_prefix);
    if (auto e = read_rest(frame.payload.data() + value_at, flat_prefix)) return {std::move(e), true};
    const std::size_t value_size = payload_size - value_at;
    auto head_of_value = [&] { return std::span<const std::uint8_t>(frame.payload).subspan(value_at); };
    auto in_place = one_array_prefix(head_of_value(), value_size);
    if (in_place.prefix > flat_prefix && in_place.prefix <= value_size) {  // a shape's dimensions
      frame.payload.resize(value_at + in_place.prefix);
      if (auto e = read_rest(frame.payload.data() + value_at + flat_prefix, in_place.prefix - flat_prefix))
        return {std::move(e), true};
      in_place = one_array_prefix(head_of_value(), value_size);
    }
    if (in_place.whole_payload) {
      typed_array a = std::move(in_place.array);
      const std::size_t elements_bytes = value_size - in_place.prefix;
      if (header->type == message_type::event && event_buffer_source_)
        a.data = event_buffer_source_(header->request_id, elements_bytes);
      a.data.resize(elements_bytes);  // a given-back buffer of this size: no zero-filling
      if (auto e = read_rest(a.data.data(), a.data.size())) return {std::move(e), true};
      frame.array = value(std::move(a));
      frame.payload.resize(value_at);  // an event keeps its envelope; a result keeps nothing
    } else if (auto e = read_remaining()) {
      return {std::move(e), true};
    }
  } else if (auto e = read_remaining()) {
    return {std::move(e), true};
  }
  if (header->request_id == 0 && header->type == message_type::error) {
    // Request id 0 is never used by requests: it carries a connection-level error (busy,
    // bad_frame, the handshake timeout) that the daemon sends just before it closes.
    auto decoded = protocol::decode_payload(frame.payload);
    return {decoded ? protocol::parse_error(*decoded) : decoded.err(), false};
  }
  if (header->type == message_type::event) {
    if (event_handler_) event_handler_(header->request_id, std::move(frame));
    return {};
  }
  bool oneway_failed = false;
  {
    std::lock_guard lock(state_mutex_);
    auto it = pending_.find(header->request_id);
    if (it != pending_.end()) {  // replies nobody waits for (abandoned on timeout) are dropped
      it->second->done = true;
      it->second->frame = std::move(frame);
      pending_.erase(it);
      state_changed_.notify_all();
      return {};
    }
    oneway_failed = header->type == message_type::error && oneway_set_.count(header->request_id) != 0;
  }
  if (oneway_failed && oneway_handler_) {
    auto decoded = protocol::decode_payload(frame.payload);
    oneway_handler_(decoded ? protocol::parse_error(*decoded) : decoded.err());
  }
  return {};
}

void multiplexer::break_link(const error& e, bool abortive) {
  std::lock_guard lock(state_mutex_);
  break_locked(e, abortive);
}

void multiplexer::break_locked(const error& e, bool abortive) {
  if (!broken_) broken_ = e;
  link_broken_ = true;
  for (auto& [id, reply] : pending_) {
    reply->done = true;
    reply->failure = *broken_;
  }
  pending_.clear();
  link_.shutdown(abortive);
  state_changed_.notify_all();
}

std::optional<error> multiplexer::broken() const {
  std::lock_guard lock(state_mutex_);
  return broken_;
}

void multiplexer::mark_broken(const error& e) {
  std::lock_guard lock(state_mutex_);
  if (broken_) broken_ = e;
}

void multiplexer::replace(transport link) {
  std::unique_lock lock(state_mutex_);
  state_changed_.wait(lock, [&] { return !reader_active_; });
  {
    std::lock_guard write_lock(write_mutex_);
    link_ = std::move(link);  // closes the old one
    generation_.fetch_add(1);
    link_broken_ = false;
  }
  broken_.reset();
  last_sent_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
}

bool multiplexer::idle_link_closed() {
  std::lock_guard lock(state_mutex_);
  if (broken_ || !pending_.empty() || reader_active_) return false;
  // Right after a request the link is fresh: a caller in a loop saves the syscall.
  if (std::chrono::steady_clock::now() - last_sent() < idle_check_after) return false;
  return link_.peer_closed();  // no reader can start meanwhile: this mutex is held
}

void multiplexer::send_goodbye(const std::vector<std::uint8_t>& frame) {
  std::lock_guard lock(write_mutex_);
  if (link_broken_.load()) return;
  if (!link_.send(frame).failure) link_.close_notify();
}

}  // namespace labhost::client_detail
