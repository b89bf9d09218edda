// frame_buffer.h: the bytes of one outgoing frame, in up to two blocks.
//
// A frame is built in head() (its header, then small payloads). A driver that produces a
// large result in place (labhost_output.reserve, ABI 1.1) gets a separate tail block for it,
// uninitialized, 16-byte aligned: the bytes are written once, there, and the socket sends
// head and tail together (writev), so a camera frame is neither zero-filled nor copied.
// A large tail comes from, and goes back to, the block cache (block_cache.h). A tail may also
// be shared: an event's value, encoded once, is the tail of the frame of every subscriber
// that gets it (with_shared_tail).
// A frame may carry what to do once it has been written whole (on_sent): a subscription
// writes its next event only then.
// Not thread-safe; movable, not copyable.
#ifndef LABHOST_PROTOCOL_FRAME_BUFFER_H
#define LABHOST_PROTOCOL_FRAME_BUFFER_H

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "block_cache.h"

namespace labhost::protocol {

class frame_buffer {
 public:
  frame_buffer() = default;
  explicit frame_buffer(std::vector<std::uint8_t> head) : head_(std::move(head)) {}

  std::vector<std::uint8_t>& head() noexcept { return head_; }
  const std::vector<std::uint8_t>& head() const noexcept { return head_; }
  std::span<const std::uint8_t> tail() const noexcept { return {tail_.get(), tail_size_}; }
  /// The tail, to share with other frames (an event's value); null when there is none.
  const std::shared_ptr<std::uint8_t>& shared_tail() const noexcept { return tail_; }
  std::size_t size() const noexcept { return head_.size() + tail_size_; }

  /// Appends `size` uninitialized bytes and returns where to write them.
  std::uint8_t* append_uninitialized(std::size_t size) {
    fold_tail();
    cached_block block = take_block(size);
    const block_return give_back = block.get_deleter();
    tail_ = std::shared_ptr<std::uint8_t>(block.release(), give_back);
    tail_size_ = size;
    return tail_.get();
  }

  /// A frame of `head` followed by `size` bytes at `tail`, which it shares (never writes).
  static frame_buffer with_shared_tail(std::vector<std::uint8_t> head, std::shared_ptr<std::uint8_t> tail,
                                       std::size_t size) {
    frame_buffer frame(std::move(head));
    frame.tail_ = std::move(tail);
    frame.tail_size_ = size;
    return frame;
  }

  /// What to do once the whole frame has been written (not when it is dropped unwritten).
  void on_sent(std::function<void()> callback) { sent_ = std::move(callback); }
  /// Takes the callback out, to run it once the writer holds no lock.
  std::function<void()> take_on_sent() noexcept { return std::move(sent_); }

  /// Appends a copy of [data, data + size).
  void append(const std::uint8_t* data, std::size_t size) {
    fold_tail();
    head_.insert(head_.end(), data, data + size);
  }

  /// Cuts the frame back to its first `size` bytes. REQUIRES: size <= head().size().
  void truncate(std::size_t size) {
    tail_.reset();
    tail_size_ = 0;
    head_.resize(size);
  }

  /// The whole frame in one vector (copies the tail): for tests and error messages.
  std::vector<std::uint8_t> contiguous() const {
    std::vector<std::uint8_t> all(head_);
    all.insert(all.end(), tail_.get(), tail_.get() + tail_size_);
    return all;
  }

 private:
  /// Bytes appended after a tail go after it: the tail joins the head first (rare).
  void fold_tail() {
    if (tail_size_ == 0) return;
    head_.insert(head_.end(), tail_.get(), tail_.get() + tail_size_);
    tail_.reset();
    tail_size_ = 0;
  }

  std::vector<std::uint8_t> head_;
  std::shared_ptr<std::uint8_t> tail_;  // from the block cache, or shared with other frames
  std::size_t tail_size_ = 0;
  std::function<void()> sent_;
};

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_FRAME_BUFFER_H
