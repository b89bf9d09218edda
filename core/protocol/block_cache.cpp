#include "block_cache.h"

#include <mutex>
#include <new>
#include <vector>

namespace labhost::protocol {

namespace {

struct kept_block {
  std::uint8_t* data;
  std::size_t capacity;
};

struct block_cache {
  block_cache() { kept.reserve(cached_blocks_max); }  // so that giving back never allocates
  std::mutex mutex;                                   // guards kept
  std::vector<kept_block> kept;                       // oldest first; at most cached_blocks_max
};

/// Never destroyed: a frame may give its block back while the process exits.
block_cache& cache() {
  static block_cache* the_cache = new block_cache;
  return *the_cache;
}

}  // namespace

void block_return::operator()(std::uint8_t* block) const noexcept {
  if (block == nullptr) return;
  if (capacity < cached_block_min) {
    delete[] block;
    return;
  }
  std::uint8_t* dropped = nullptr;
  {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    if (c.kept.size() == cached_blocks_max) {
      dropped = c.kept.front().data;
      c.kept.erase(c.kept.begin());
    }
    c.kept.push_back({block, capacity});
  }
  delete[] dropped;
}

cached_block take_block(std::size_t size) {
  if (size >= cached_block_min) {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    // The smallest kept block that fits, so that a large one stays for a large frame.
    auto best = c.kept.end();
    for (auto it = c.kept.begin(); it != c.kept.end(); ++it)
      if (it->capacity >= size && it->capacity / 2 <= size && (best == c.kept.end() || it->capacity < best->capacity))
        best = it;
    if (best != c.kept.end()) {
      kept_block found = *best;
      c.kept.erase(best);
      return cached_block(found.data, block_return{found.capacity});
    }
  }
  return cached_block(new std::uint8_t[size], block_return{size});  // uninitialized
}

std::size_t cached_block_count() {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  return c.kept.size();
}

void release_cached_blocks() {
  std::vector<kept_block> dropped;
  {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    dropped.swap(c.kept);
    c.kept.reserve(cached_blocks_max);
  }
  for (auto& b : dropped) delete[] b.data;
}

}  // namespace labhost::protocol
