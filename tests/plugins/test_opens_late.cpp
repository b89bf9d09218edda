// test_opens_late: an instrument that opens only once a file exists (parameter ready_file),
// like one powered on after the PC: the service waits, retried, until it opens.
#include <labhost/driver.h>

#include <filesystem>
#include <string>

namespace {
class test_opens_late {
 public:
  explicit test_opens_late(const labhost::params& p) {
    auto file = p.require<std::string>("ready_file");
    if (!std::filesystem::exists(file))
      throw labhost::unavailable_error("instrument not powered (no " + file + ")");
  }
  std::string hello() { return "opened"; }
};
}  // namespace

LABHOST_DRIVER(test_opens_late, "test_opens_late", "0.1.0", "labhost tests", "Opens once a file exists",
               labhost::method(&test_opens_late::hello, "hello", {}, "Says it opened."))
