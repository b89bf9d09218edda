// frame_buffer.h: the bytes of one outgoing frame, in up to two blocks.
//
// A frame is built in head() (its header, then small payloads). A driver that produces a
// large result in place (labhost_output.reserve, ABI 1.1) gets a separate tail block for it,
// uninitialized, 16-byte aligned: the bytes are written once, there, and the socket sends
// head and tail together (writev), so a camera frame is neither zero-filled nor copied.
// A large tail comes from, and goes back to, the block cache (block_cache.h).
// Not thread-safe; movable, not copyable.
#ifndef LABHOST_PROTOCOL_FRAME_BUFFER_H
#define LABHOST_PROTOCOL_FRAME_BUFFER_H

#include <algorithm>
#include <cstdint>
#include <cstring>
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
  std::size_t size() const noexcept { return head_.size() + tail_size_; }

  /// Appends `size` uninitialized bytes and returns where to write them.
  std::uint8_t* append_uninitialized(std::size_t size) {
    fold_tail();
    tail_ = take_block(size);
    tail_size_ = size;
    return tail_.get();
  }

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
  cached_block tail_;
  std::size_t tail_size_ = 0;
};

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_FRAME_BUFFER_H
