// test_create_throws: a driver whose instrument never opens (create throws).
#include <labhost/driver.h>

namespace {
class test_create_throws {
 public:
  explicit test_create_throws(const labhost::params&) {
    throw labhost::driver_error("instrument not found on /dev/ttyUSB9");
  }
  int nothing() { return 0; }
};
}  // namespace

LABHOST_DRIVER(test_create_throws, "test_create_throws", "0.1.0", "labhost tests",
               "Fails to open", labhost::method(&test_create_throws::nothing, "nothing", {}, ""))
