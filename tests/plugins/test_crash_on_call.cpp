// test_crash_on_call: a driver that kills its daemon process (abort) on request, or at open
// with the parameter crash_on_open, for tests of crashes and crash loops.
#include <labhost/driver.h>

#include <cstdlib>

namespace {
class test_crash_on_call {
 public:
  explicit test_crash_on_call(const labhost::params& p) {
    if (p.get("crash_on_open", false)) std::abort();  // a driver that kills its daemon at start
  }
  void crash() { std::abort(); }
  int ok() { return 1; }
};
}  // namespace

LABHOST_DRIVER(test_crash_on_call, "test_crash_on_call", "0.1.0", "labhost tests", "Crashes on call",
               labhost::method(&test_crash_on_call::crash, "crash", {}, "abort()s the daemon."),
               labhost::method(&test_crash_on_call::ok, "ok", {}, "Returns 1."))
