// sim_powermeter: a simulated optical power meter returning a noisy reading.
// Parameters: mean_w (default 1e-3), noise_w (default 1e-5, standard deviation), seed.
#include <labhost/driver.h>

#include <cstdint>
#include <random>

namespace {

class sim_powermeter {
 public:
  explicit sim_powermeter(const labhost::params& p)
      : noise_(p.get("mean_w", 1e-3), p.get("noise_w", 1e-5)),
        random_(static_cast<std::uint32_t>(p.get<std::int64_t>("seed", std::random_device{}()))) {}

  double read() { return noise_(random_); }
  std::vector<double> read_many(std::int64_t count) {
    if (count < 0 || count > 1'000'000) throw labhost::driver_error("count must be 0 to 1000000");
    std::vector<double> readings(static_cast<std::size_t>(count));
    for (auto& r : readings) r = read();
    return readings;
  }

 private:
  std::normal_distribution<double> noise_;
  std::mt19937 random_;
};

}  // namespace

LABHOST_DRIVER(sim_powermeter, "sim_powermeter", "1.0.0", "labhost", "Simulated optical power meter",
    labhost::method(&sim_powermeter::read, "read", {}, "One reading in W."),
    labhost::method(&sim_powermeter::read_many, "read_many", {"count"},
                    "count readings in W, as a float64 array."))
