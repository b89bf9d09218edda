// sim_camera: a simulated 16-bit camera. grab() returns a (height, width) uint16 frame as a
// shaped typed array: pixel (y, x) = (x + y + frame) mod 65536 plus the exposure, so a client
// can check every pixel. While someone subscribes to the topic "frames", the camera also
// acquires continuously and publishes each frame there: pixel (y, x) = (x + y + n) mod 65536
// for the n-th frame it streamed (n from 1), at frame_rate_hz, or as fast as its subscribers
// take them when frame_rate_hz is 0.
// Parameters: width (default 2048), height (default 2048), exposure_ms (default 10),
// frame_rate_hz (default 30; 0: as fast as taken).
#include <labhost/driver.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace {

class sim_camera {
 public:
  explicit sim_camera(const labhost::params& p)
      : width_(p.get<std::int64_t>("width", 2048)),
        height_(p.get<std::int64_t>("height", 2048)),
        exposure_ms_(p.get("exposure_ms", 10.0)),
        frame_rate_hz_(p.get("frame_rate_hz", 30.0)) {
    if (width_ < 1 || height_ < 1 || width_ * height_ > (64ll << 20))
      throw labhost::bad_arguments_error("width x height must be 1 to 64 Mpixel");
    if (!(frame_rate_hz_ >= 0 && frame_rate_hz_ <= 100'000))
      throw labhost::bad_arguments_error("frame_rate_hz must be 0 to 100000");
    ramp_.resize(2 * 65536);
    for (std::size_t i = 0; i < ramp_.size(); ++i) ramp_[i] = static_cast<std::uint16_t>(i);
  }
  ~sim_camera() { close(); }
  sim_camera(const sim_camera&) = delete;
  sim_camera& operator=(const sim_camera&) = delete;

  void set_exposure(double ms) {
    if (!(ms > 0 && ms <= 60'000)) throw labhost::driver_error("exposure must be in (0, 60000] ms");
    exposure_ms_ = ms;
  }
  double exposure() const { return exposure_ms_; }
  std::vector<std::int64_t> shape() const { return {height_, width_}; }

  labhost::array_result<std::uint16_t> grab() {
    const auto offset = static_cast<std::int64_t>(frame_count_ + static_cast<std::int64_t>(exposure_ms_.load()));
    ++frame_count_;
    // Written straight into the daemon's reply.
    return labhost::shaped_result<std::uint16_t>(
        {static_cast<std::uint32_t>(height_), static_cast<std::uint32_t>(width_)},
        [this, offset](std::span<std::uint16_t> pixels) { render(pixels, offset); });
  }
  std::int64_t frames() const { return frame_count_; }
  std::int64_t streamed() const { return streamed_; }

  // --- Streaming: an acquisition thread runs from set_publisher until close.
  void set_publisher(labhost::publisher p) {
    publisher_ = p;
    acquisition_ = std::thread([this] { acquire(); });
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (acquisition_.joinable()) acquisition_.join();  // no publication after close (driver_abi.h)
  }

 private:
  /// Row y is the ramp (y + offset), (y + offset + 1), ... mod 65536: a copy out of one
  /// precomputed ramp, as a real camera copies out of its frame buffer.
  void render(std::span<std::uint16_t> pixels, std::int64_t offset) const {
    for (std::int64_t y = 0; y < height_; ++y)
      for (std::int64_t x = 0; x < width_; x += 65536) {
        const auto count = static_cast<std::size_t>(std::min<std::int64_t>(65536, width_ - x));
        std::memcpy(pixels.data() + y * width_ + x, ramp_.data() + ((x + y + offset) & 0xFFFF), count * 2);
      }
  }

  /// Publishes frames while someone subscribes to "frames"; idles (looking five times a second)
  /// while nobody does.
  void acquire() {
    using clock = std::chrono::steady_clock;
    const auto period = frame_rate_hz_ > 0 ? std::chrono::duration_cast<clock::duration>(
                                                 std::chrono::duration<double>(1.0 / frame_rate_hz_))
                                           : clock::duration::zero();
    auto next = clock::now();
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      const auto demand = publisher_.demand("frames");
      if (demand.subscribers == 0 || (period.count() == 0 && demand.ready == 0)) {
        // Nobody to publish for, or everyone is still busy with the last frames.
        wake_.wait_for(lock, demand.subscribers == 0 ? std::chrono::microseconds(200'000) : std::chrono::microseconds(200));
        next = clock::now();
        continue;
      }
      if (period.count() > 0) {
        if (wake_.wait_until(lock, next, [&] { return stopping_; })) break;
        next += period;
        if (next < clock::now()) next = clock::now();  // fell behind: no burst to catch up
      }
      lock.unlock();
      const std::int64_t n = ++streamed_;
      publisher_.publish_array<std::uint16_t>(
          "frames", {static_cast<std::uint32_t>(height_), static_cast<std::uint32_t>(width_)},
          [this, n](std::span<std::uint16_t> pixels) { render(pixels, n); });
      lock.lock();
    }
  }

  const std::int64_t width_;
  const std::int64_t height_;
  std::atomic<double> exposure_ms_;
  const double frame_rate_hz_;
  std::atomic<std::int64_t> frame_count_{0};
  std::atomic<std::int64_t> streamed_{0};
  std::vector<std::uint16_t> ramp_;  // ramp_[i] = i mod 65536: any 65536 pixels of a row; read-only
  labhost::publisher publisher_;
  std::thread acquisition_;
  std::mutex mutex_;  // guards stopping_; with wake_
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace

LABHOST_DRIVER(sim_camera, "sim_camera", "1.1.0", "labhost", "Simulated 16-bit camera",
    labhost::method(&sim_camera::set_exposure, "set_exposure", {"ms"}, "Set the exposure in ms."),
    labhost::method(&sim_camera::exposure, "exposure", {}, "Exposure in ms."),
    labhost::method(&sim_camera::shape, "shape", {}, "[height, width] of a frame."),
    labhost::method(&sim_camera::grab, "grab", {},
                    "One frame: a (height, width) uint16 array; pixel (y, x) = x + y + frames() + "
                    "int(exposure) mod 65536."),
    labhost::method(&sim_camera::frames, "frames", {}, "Frames grabbed since the camera opened."),
    labhost::method(&sim_camera::streamed, "streamed", {}, "Frames published on the topic frames so far."),
    labhost::topic<std::vector<std::uint16_t>>(
        "frames", "Frames acquired continuously while subscribed: (height, width) uint16; pixel (y, x) of the n-th "
                  "frame streamed = x + y + n mod 65536."))
