// test_abi_version: a hand-written descriptor whose abi_version is set at build time
// (TEST_ABI_VERSION), to check that the host refuses another major and a newer minor.
#include <labhost/driver_abi.h>

#include <boost/dll/alias.hpp>

namespace {

int create(const uint8_t*, size_t, void** instance, labhost_output*) {
  static int dummy;
  *instance = &dummy;
  return LABHOST_OK;
}
void destroy(void*) {}
// answer() returns the int64 42, written the ABI 1.0 way: through write() only.
int invoke(void*, uint32_t, const uint8_t*, size_t, labhost_output* result) {
  const uint8_t answer[9] = {2 /* int64 */, 42, 0, 0, 0, 0, 0, 0, 0};
  return result->write(result->context, answer, sizeof answer) == 0 ? LABHOST_OK : LABHOST_DRIVER_ERROR;
}

const labhost_method_info methods[] = {{"answer", nullptr, 0, "int64", "The answer."}};

const labhost_driver_descriptor descriptor = {
    sizeof(labhost_driver_descriptor), TEST_ABI_VERSION, TEST_NAME, "0.1.0", "labhost tests",
    "ABI version test", methods, 1, &create, &destroy, &invoke, nullptr, nullptr};

const labhost_driver_descriptor* entry() { return &descriptor; }

}  // namespace

BOOST_DLL_ALIAS(entry, labhost_driver_entry)
