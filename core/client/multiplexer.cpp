#include "multiplexer.h"

#include <array>
#include <cstring>

#include "../protocol/messages.h"

namespace labhost::client_detail {

using protocol::message_type;

namespace {

constexpr auto idle_check_after = std::chrono::milliseconds(5);  // docs/clients.md, rule 5

[[noreturn]] void fail(errc code, std::string message) { throw remote_error(error{code, std::move(message)}); }

}  // namespace

result<multiplexer::ticket, multiplexer::send_failure> multiplexer::send(message_type type, const value& payload) {
  auto reply = std::make_shared<waiting_reply>();
  std::uint32_t id;
  {
    std::lock_guard lock(state_mutex_);
    if (broken_) return send_failure{*broken_, false};
    id = next_id_++;
    if (next_id_ == 0) next_id_ = 1;  // 0 is the daemon's, for connection-level errors
    reply->generation = generation_.load();
    pending_[id] = reply;
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

multiplexer::read_outcome multiplexer::read_one(std::optional<time_point> deadline, bool busy_poll) {
  std::array<std::uint8_t, protocol::header_size> header_bytes;
  std::size_t header_read = 0;
  if (auto e = link_.read_exact(header_bytes.data(), header_bytes.size(), deadline, busy_poll, &header_read))
    return {std::move(e), header_read > 0};
  auto header = protocol::parse_header(header_bytes, max_frame_bytes_);
  if (!header) return {header.err(), true};
  reply_frame frame;
  frame.type = header->type;
  auto read_rest = [&](std::uint8_t* into, std::size_t size) { return link_.read_exact(into, size, deadline, busy_poll); };
  constexpr std::size_t array_prefix = 6;  // tag, element type, u32 count
  if (header->type == message_type::result && header->payload_size > array_prefix) {
    // A bulk result (a camera frame) is usually one typed array: read its elements straight
    // into the array that the caller gets, with no intermediate copy.
    frame.payload.resize(array_prefix);
    if (auto e = read_rest(frame.payload.data(), array_prefix)) return {std::move(e), true};
    std::uint32_t count;
    std::memcpy(&count, frame.payload.data() + 2, 4);
    const auto type = static_cast<element_type>(frame.payload[1]);
    if (frame.payload[0] == static_cast<std::uint8_t>(value_kind::array) && element_size(type) != 0 &&
        std::uint64_t{count} * element_size(type) == header->payload_size - array_prefix) {
      typed_array a;
      a.type = type;
      a.data.resize(header->payload_size - array_prefix);
      if (auto e = read_rest(a.data.data(), a.data.size())) return {std::move(e), true};
      frame.array = value(std::move(a));
    } else {
      frame.payload.resize(header->payload_size);
      if (auto e = read_rest(frame.payload.data() + array_prefix, frame.payload.size() - array_prefix))
        return {std::move(e), true};
    }
  } else {
    frame.payload.resize(header->payload_size);
    if (auto e = read_rest(frame.payload.data(), frame.payload.size())) return {std::move(e), true};
  }
  if (header->request_id == 0 && header->type == message_type::error) {
    // Request id 0 is never used by requests: it carries a connection-level error (busy,
    // bad_frame, the handshake timeout) that the daemon sends just before it closes.
    auto decoded = protocol::decode_payload(frame.payload);
    return {decoded ? protocol::parse_error(*decoded) : decoded.err(), false};
  }
  std::lock_guard lock(state_mutex_);
  auto it = pending_.find(header->request_id);
  if (it != pending_.end()) {  // replies nobody waits for (abandoned on timeout) are dropped
    it->second->done = true;
    it->second->frame = std::move(frame);
    pending_.erase(it);
    state_changed_.notify_all();
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
