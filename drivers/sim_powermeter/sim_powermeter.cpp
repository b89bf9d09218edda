// sim_powermeter: a simulated optical power meter returning a noisy reading. While someone
// subscribes to the topic "power", it publishes a reading rate_hz times a second.
// Parameters: mean_w (default 1e-3), noise_w (default 1e-5, standard deviation), seed,
// rate_hz (default 10).
#include <labhost/driver.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>

namespace {

class sim_powermeter {
 public:
  explicit sim_powermeter(const labhost::params& p)
      : noise_(p.get("mean_w", 1e-3), p.get("noise_w", 1e-5)),
        random_(static_cast<std::uint32_t>(p.get<std::int64_t>("seed", std::random_device{}()))),
        rate_hz_(p.get("rate_hz", 10.0)) {
    if (!(rate_hz_ > 0 && rate_hz_ <= 100'000)) throw labhost::bad_arguments_error("rate_hz must be in (0, 100000]");
  }
  ~sim_powermeter() { close(); }
  sim_powermeter(const sim_powermeter&) = delete;
  sim_powermeter& operator=(const sim_powermeter&) = delete;

  double read() {
    std::lock_guard lock(mutex_);
    return noise_(random_);
  }
  std::vector<double> read_many(std::int64_t count) {
    if (count < 0 || count > 1'000'000) throw labhost::driver_error("count must be 0 to 1000000");
    std::vector<double> readings(static_cast<std::size_t>(count));
    for (auto& r : readings) r = read();
    return readings;
  }

  void set_publisher(labhost::publisher p) {
    publisher_ = p;
    sampler_ = std::thread([this] { sample(); });
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (sampler_.joinable()) sampler_.join();
  }

 private:
  /// A reading every 1/rate_hz while someone listens; five looks a second while nobody does.
  void sample() {
    const auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(1.0 / rate_hz_));
    auto next = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (publisher_.demand("power").subscribers == 0) {
        if (wake_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; })) break;
        next = std::chrono::steady_clock::now();
        continue;
      }
      next += period;
      if (next < std::chrono::steady_clock::now()) next = std::chrono::steady_clock::now();
      if (wake_.wait_until(lock, next, [&] { return stopping_; })) break;
      const double reading = noise_(random_);
      lock.unlock();
      publisher_.publish("power", reading);
      lock.lock();
    }
  }

  std::mutex mutex_;  // guards noise_, random_, stopping_; with wake_
  std::normal_distribution<double> noise_;
  std::mt19937 random_;
  const double rate_hz_;
  labhost::publisher publisher_;
  std::thread sampler_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace

LABHOST_DRIVER(sim_powermeter, "sim_powermeter", "1.1.0", "labhost", "Simulated optical power meter",
    labhost::method(&sim_powermeter::read, "read", {}, "One reading in W."),
    labhost::method(&sim_powermeter::read_many, "read_many", {"count"},
                    "count readings in W, as a float64 array."),
    labhost::topic<double>("power", "A reading in W, rate_hz times a second while subscribed."))
