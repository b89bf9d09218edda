// block_cache.h: uninitialized blocks for the large parts of outgoing frames (a camera frame
// written in place), the last ones given back kept for the next frames.
//
// A daemon serving camera frames allocates and frees a block of megabytes per call. Left to
// malloc, small allocations made between the free and the next call land in the freed block,
// the next frame no longer fits there, and the heap grows by a frame, page by page (and each
// new page is a fault: milliseconds per frame on the machines measured). Kept aside, the
// block is simply used again: memory stays at what the largest frames in flight need, and
// no page is faulted twice.
// Thread-safe: blocks are taken and given back from any thread.
#ifndef LABHOST_PROTOCOL_BLOCK_CACHE_H
#define LABHOST_PROTOCOL_BLOCK_CACHE_H

#include <cstddef>
#include <cstdint>
#include <memory>

namespace labhost::protocol {

/// Blocks this large or larger are kept when given back; smaller ones are freed at once.
inline constexpr std::size_t cached_block_min = 1u << 20;
/// How many given-back blocks are kept at most (the oldest goes first).
/// Two: what a camera served frame after frame needs (one written, one on its way out). A
/// stream holds more at once; the daemon's heap (labhost keeps large blocks in it, see
/// labhost_main.cpp) serves those without faulting pages again.
inline constexpr std::size_t cached_blocks_max = 2;

/// Gives a block back to the cache (or frees it) when its owner is done.
struct block_return {
  std::size_t capacity = 0;
  void operator()(std::uint8_t* block) const noexcept;
};
using cached_block = std::unique_ptr<std::uint8_t[], block_return>;

/// An uninitialized block of at least `size` bytes: a kept one when one fits (at least
/// `size`, at most twice that), else a new one.
cached_block take_block(std::size_t size);

/// Blocks kept right now (for tests).
std::size_t cached_block_count();
/// Frees every kept block.
void release_cached_blocks();

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_BLOCK_CACHE_H
