// The block cache behind the large parts of outgoing frames (protocol/block_cache.h).
#define BOOST_TEST_MODULE block_cache
#include "protocol/block_cache.h"

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "protocol/frame_buffer.h"

using namespace labhost::protocol;

namespace {

constexpr std::size_t frame = 8u << 20;  // a 2048 x 2048 uint16 camera frame

struct empty_cache {
  empty_cache() { release_cached_blocks(); }
  ~empty_cache() { release_cached_blocks(); }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(cache, empty_cache)

BOOST_AUTO_TEST_CASE(a_large_block_given_back_serves_the_next_frame_of_its_size) {
  std::uint8_t* first;
  {
    auto block = take_block(frame);
    first = block.get();
    std::memset(first, 1, frame);  // usable over its whole size
  }
  BOOST_TEST(cached_block_count() == 1u);
  auto again = take_block(frame - 100);
  BOOST_TEST(again.get() == first);
  BOOST_TEST(cached_block_count() == 0u);
}

BOOST_AUTO_TEST_CASE(small_blocks_are_freed_not_kept) {
  { auto block = take_block(cached_block_min - 1); }
  { auto block = take_block(64); }
  BOOST_TEST(cached_block_count() == 0u);
}

BOOST_AUTO_TEST_CASE(at_most_cached_blocks_max_are_kept_the_oldest_goes) {
  std::set<std::uint8_t*> newest;
  {
    std::vector<cached_block> blocks;
    for (std::size_t i = 0; i <= cached_blocks_max; ++i) blocks.push_back(take_block(frame));
    for (std::size_t i = 1; i <= cached_blocks_max; ++i) newest.insert(blocks[i].get());
    for (auto& b : blocks) b.reset();  // the first given back is the oldest
  }
  BOOST_TEST(cached_block_count() == cached_blocks_max);
  std::vector<cached_block> again;
  for (std::size_t i = 0; i < cached_blocks_max; ++i) again.push_back(take_block(frame));
  for (auto& b : again) BOOST_TEST(newest.count(b.get()) == 1u);
}

BOOST_AUTO_TEST_CASE(a_block_over_twice_the_size_asked_for_is_left_for_a_large_frame) {
  std::uint8_t* large;
  {
    auto block = take_block(4 * frame);
    large = block.get();
  }
  auto small = take_block(frame);
  BOOST_TEST(small.get() != large);
  BOOST_TEST(cached_block_count() == 1u);
  auto fits = take_block(3 * frame);
  BOOST_TEST(fits.get() == large);
}

BOOST_AUTO_TEST_CASE(the_smallest_kept_block_that_fits_is_taken) {
  std::uint8_t* medium;
  {
    auto big = take_block(2 * frame);
    auto mid = take_block(frame + frame / 2);
    medium = mid.get();
  }
  auto block = take_block(frame);
  BOOST_TEST(block.get() == medium);
}

BOOST_AUTO_TEST_CASE(frames_from_many_threads_share_the_cache_safely) {
  std::atomic<int> mixed_up{0};  // Boost.Test checks belong to the main thread
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &mixed_up] {
      const std::size_t size = cached_block_min + static_cast<std::size_t>(t) * 4096;
      for (int i = 0; i < 200; ++i) {
        frame_buffer f(std::vector<std::uint8_t>(16));
        std::uint8_t* tail = f.append_uninitialized(size);
        std::memset(tail, t, size);
        std::this_thread::yield();
        if (f.tail().size() != size || f.tail()[0] != t || f.tail()[size - 1] != t) ++mixed_up;
      }
    });
  for (auto& t : threads) t.join();
  BOOST_TEST(mixed_up.load() == 0);
  BOOST_TEST(cached_block_count() <= cached_blocks_max);
}

BOOST_AUTO_TEST_SUITE_END()
