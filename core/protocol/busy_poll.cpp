#include "busy_poll.h"

#include <sched.h>

namespace labhost::protocol {

busy_poll_policy::busy_poll_policy(std::chrono::microseconds window) noexcept
    : window_(window.count() > 0 && usable_cpus() > 1 ? window : std::chrono::microseconds::zero()) {}

unsigned usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(CPU_COUNT(&set));
}

}  // namespace labhost::protocol
