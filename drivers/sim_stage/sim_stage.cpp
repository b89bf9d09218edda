// sim_stage: a simulated linear motion stage. move_to() blocks for |distance| / speed
// seconds, like a real stage that returns when the move is done: the long-running blocking
// call of a lab, which must not hold up other services of its daemon. While it moves it
// publishes its position on the topic "position" every 50 ms, and once more when it arrives.
// Parameters: speed_mm_s (default 10), min_mm (default 0), max_mm (default 100), position_mm.
#include <labhost/driver.h>

#include <chrono>
#include <cmath>
#include <string>
#include <algorithm>
#include <thread>

namespace {

class sim_stage {
 public:
  explicit sim_stage(const labhost::params& p)
      : speed_mm_s_(p.get("speed_mm_s", 10.0)),
        min_mm_(p.get("min_mm", 0.0)),
        max_mm_(p.get("max_mm", 100.0)),
        position_mm_(p.get("position_mm", 0.0)) {
    if (!(speed_mm_s_ > 0)) throw labhost::bad_arguments_error("speed_mm_s must be positive");
  }

  double position() const { return position_mm_; }
  double move_to(double mm) {
    if (!(mm >= min_mm_ && mm <= max_mm_))
      throw labhost::driver_error("target " + std::to_string(mm) + " mm is outside the travel " +
                                  std::to_string(min_mm_) + "-" + std::to_string(max_mm_) + " mm");
    using clock = std::chrono::steady_clock;
    const double from = position_mm_;
    const auto duration = std::chrono::duration<double>(std::abs(mm - from) / speed_mm_s_);
    const auto start = clock::now();
    const auto end = start + std::chrono::duration_cast<clock::duration>(duration);
    for (auto now = start; now < end; now = clock::now()) {
      const double done = std::chrono::duration<double>(now - start) / duration;
      publisher_.publish("position", from + (mm - from) * done);
      std::this_thread::sleep_until(std::min(end, now + std::chrono::milliseconds(50)));
    }
    position_mm_ = mm;
    publisher_.publish("position", position_mm_);
    return position_mm_;
  }
  void set_publisher(labhost::publisher p) { publisher_ = p; }
  double home() { return move_to(min_mm_); }
  double speed() const { return speed_mm_s_; }

 private:
  double speed_mm_s_;
  double min_mm_;
  double max_mm_;
  double position_mm_;
  labhost::publisher publisher_;
};

}  // namespace

LABHOST_DRIVER(sim_stage, "sim_stage", "1.1.0", "labhost", "Simulated linear stage",
    labhost::method(&sim_stage::position, "position", {}, "Current position in mm."),
    labhost::method(&sim_stage::move_to, "move_to", {"mm"},
                    "Move to mm and return when there (takes |distance| / speed seconds)."),
    labhost::method(&sim_stage::home, "home", {}, "Move to the lower end of the travel."),
    labhost::method(&sim_stage::speed, "speed", {}, "Speed in mm/s."),
    labhost::topic<double>("position", "The position in mm while it moves (every 50 ms) and when it arrives."))
