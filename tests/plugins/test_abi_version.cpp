// test_abi_version: a hand-written descriptor whose abi_version is set at build time
// (TEST_ABI_VERSION), to check that the host refuses another major and a newer minor, and
// gives an older driver its arguments as its ABI knows values.
#include <labhost/driver_abi.h>

#include <boost/dll/alias.hpp>
#include <cstddef>

namespace {

int create(const uint8_t*, size_t, void** instance, labhost_output*) {
  static int dummy;
  *instance = &dummy;
  return LABHOST_OK;
}
void destroy(void*) {}
// answer() returns the int64 42, written the ABI 1.0 way: through write() only. echo(value)
// returns its argument's bytes as the daemon gave them: what a driver of this ABI receives.
int invoke(void*, uint32_t method, const uint8_t* args, size_t args_size, labhost_output* result) {
  if (method == 1) {
    const size_t list_prefix = 5;  // list tag, u32 count (1)
    if (args_size <= list_prefix) return LABHOST_BAD_ARGUMENTS;
    return result->write(result->context, args + list_prefix, args_size - list_prefix) == 0 ? LABHOST_OK
                                                                                              : LABHOST_DRIVER_ERROR;
  }
  const uint8_t answer[9] = {2 /* int64 */, 42, 0, 0, 0, 0, 0, 0, 0};
  return result->write(result->context, answer, sizeof answer) == 0 ? LABHOST_OK : LABHOST_DRIVER_ERROR;
}

const labhost_param_info echo_params[] = {{"value", "any"}};
const labhost_method_info methods[] = {{"answer", nullptr, 0, "int64", "The answer."},
                                       {"echo", echo_params, 1, "any", "Its argument, as received."}};

// The descriptor as a driver of ABI 1.1 or older was built: it ends after health.
const labhost_driver_descriptor descriptor = {
    offsetof(labhost_driver_descriptor, method_flags), TEST_ABI_VERSION, TEST_NAME, "0.1.0", "labhost tests",
    "ABI version test", methods, 2, &create, &destroy, &invoke, nullptr, nullptr, nullptr, nullptr, 0, nullptr};

const labhost_driver_descriptor* entry() { return &descriptor; }

}  // namespace

BOOST_DLL_ALIAS(entry, labhost_driver_entry)
