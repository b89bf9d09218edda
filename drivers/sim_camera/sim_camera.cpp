// sim_camera: a simulated 16-bit camera. grab() returns width x height uint16 pixels
// (row-major) as a typed array: pixel (x, y) = (x + y + frame) mod 65536 plus the exposure,
// so a client can check every pixel.
// Parameters: width (default 2048), height (default 2048), exposure_ms (default 10).
#include <labhost/driver.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

class sim_camera {
 public:
  explicit sim_camera(const labhost::params& p)
      : width_(p.get<std::int64_t>("width", 2048)),
        height_(p.get<std::int64_t>("height", 2048)),
        exposure_ms_(p.get("exposure_ms", 10.0)) {
    if (width_ < 1 || height_ < 1 || width_ * height_ > (64ll << 20))
      throw labhost::bad_arguments_error("width x height must be 1 to 64 Mpixel");
    ramp_.resize(2 * 65536);
    for (std::size_t i = 0; i < ramp_.size(); ++i) ramp_[i] = static_cast<std::uint16_t>(i);
  }

  void set_exposure(double ms) {
    if (!(ms > 0 && ms <= 60'000)) throw labhost::driver_error("exposure must be in (0, 60000] ms");
    exposure_ms_ = ms;
  }
  double exposure() const { return exposure_ms_; }
  std::vector<std::int64_t> shape() const { return {height_, width_}; }

  labhost::array_result<std::uint16_t> grab() {
    const auto offset = static_cast<std::int64_t>(frame_count_ + static_cast<std::int64_t>(exposure_ms_));
    ++frame_count_;
    // Written straight into the daemon's reply. Row y is the ramp (y + offset), (y + offset
    // + 1), ... mod 65536: a copy out of one precomputed ramp, as a real camera copies out of
    // its frame buffer.
    return {static_cast<std::size_t>(width_ * height_), [this, offset](std::span<std::uint16_t> pixels) {
              for (std::int64_t y = 0; y < height_; ++y)
                for (std::int64_t x = 0; x < width_; x += 65536) {
                  const auto count = static_cast<std::size_t>(std::min<std::int64_t>(65536, width_ - x));
                  std::memcpy(pixels.data() + y * width_ + x, ramp_.data() + ((x + y + offset) & 0xFFFF), count * 2);
                }
            }};
  }
  std::int64_t frames() const { return frame_count_; }

 private:
  std::int64_t width_;
  std::int64_t height_;
  double exposure_ms_;
  std::int64_t frame_count_ = 0;
  std::vector<std::uint16_t> ramp_;  // ramp_[i] = i mod 65536: any 65536 pixels of a row
};

}  // namespace

LABHOST_DRIVER(sim_camera, "sim_camera", "1.0.0", "labhost", "Simulated 16-bit camera",
    labhost::method(&sim_camera::set_exposure, "set_exposure", {"ms"}, "Set the exposure in ms."),
    labhost::method(&sim_camera::exposure, "exposure", {}, "Exposure in ms."),
    labhost::method(&sim_camera::shape, "shape", {}, "[height, width] of a frame."),
    labhost::method(&sim_camera::grab, "grab", {},
                    "One frame: height x width uint16, row-major; pixel (x, y) = x + y + frames() + "
                    "int(exposure) mod 65536."),
    labhost::method(&sim_camera::frames, "frames", {}, "Frames grabbed since the camera opened."))
