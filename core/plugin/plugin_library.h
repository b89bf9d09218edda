// plugin_library.h: one driver plugin file, opened with Boost.DLL and checked against the ABI.
//
// Loading is two-phase, as in OBS: open the file and verify its descriptor (each refusal has
// its own load_failure), then create instances. A loaded library is never unloaded while the
// process runs: instances and descriptor strings point into it. Thread-safety: a loaded
// plugin_library is immutable and may be shared between threads.
#ifndef LABHOST_PLUGIN_PLUGIN_LIBRARY_H
#define LABHOST_PLUGIN_PLUGIN_LIBRARY_H

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../protocol/frame_buffer.h"
#include "event_hub.h"
#include "labhost/description.h"
#include "labhost/driver_abi.h"
#include "labhost/errors.h"
#include "labhost/value.h"

namespace labhost::plugin {

/// Why a file was refused; each is logged and reported with its own text.
enum class load_failure {
  not_found,          // no such file
  not_a_library,      // not a loadable shared object for this platform
  no_entry_symbol,    // loads, but does not export labhost_driver_entry
  bad_descriptor,     // entry returned null, or a descriptor too small / missing functions
  incompatible_abi,   // another ABI major version
  newer_abi_minor,    // same major, newer minor than this host knows
};
std::string_view load_failure_name(load_failure failure) noexcept;

struct load_error {
  load_failure failure;
  std::string message;  // "sim_x.so: ABI 2.0, this host speaks 1.0"
};

class driver_instance;

/// What a plugin says about itself, read from its descriptor.
struct plugin_info {
  std::filesystem::path file;
  std::string name;
  std::string version;
  std::string vendor;
  std::string description;
  std::uint32_t abi_version = 0;
  std::vector<method_description> methods;
  std::vector<topic_description> topics;  // since ABI 1.2
};

class plugin_library : public std::enable_shared_from_this<plugin_library> {
 public:
  /// Opens `file` (or returns the already-open library for it) and checks its descriptor.
  /// Does not run driver code beyond the entry function.
  static result<std::shared_ptr<const plugin_library>, load_error> load(const std::filesystem::path& file);

  const plugin_info& info() const noexcept { return info_; }
  const labhost_driver_descriptor& descriptor() const noexcept { return *descriptor_; }
  /// Index of a method by name, or -1.
  int method_index(std::string_view name) const noexcept;

  /// Creates one driver instance with `params` (a map). A driver with topics gets its event
  /// hub, which refuses values over `max_event_bytes`. Errors: bad_arguments, driver_error or
  /// service_unavailable with the driver's message.
  result<std::unique_ptr<driver_instance>> create(const value& params, std::size_t max_event_bytes = 0) const;
  /// The ABI minor version the driver was built for (1.0 drivers: 0).
  std::uint32_t abi_minor() const noexcept { return info_.abi_version & 0xFFFF; }

  struct opened;  // the Boost.DLL handle, kept out of this header
  plugin_library(std::shared_ptr<opened> library, const labhost_driver_descriptor* descriptor,
                 plugin_info info);

 private:
  std::shared_ptr<opened> library_;
  const labhost_driver_descriptor* descriptor_;
  plugin_info info_;
  bool has_close_;   // descriptor long enough to hold close()
  bool has_health_;  // ... and health()
  bool has_events_;  // ABI 1.2 with topics and attach_events
  friend class driver_instance;
};

/// One live driver instance. Not thread-safe: the caller serializes calls (a service strand).
class driver_instance {
 public:
  driver_instance(std::shared_ptr<const plugin_library> library, void* handle) noexcept;
  ~driver_instance();  // close() if not done, then destroy
  driver_instance(const driver_instance&) = delete;
  driver_instance& operator=(const driver_instance&) = delete;

  /// Calls a method with `encoded_args` (an encoded list). On success the encoded result is
  /// APPENDED to `out` (so a caller can reserve room for a frame header in front; a large
  /// result the driver wrote in place is out's tail) and nothing is returned; `max_result`
  /// bounds what the driver may write. REQUIRES: out has no tail yet.
  std::optional<error> invoke(std::uint32_t method_index, std::span<const std::uint8_t> encoded_args,
                              protocol::frame_buffer& out, std::size_t max_result);

  /// Releases the hardware (descriptor close); later calls are refused. Idempotent.
  std::optional<error> close();
  /// Asks the driver whether the instrument answers; no error when the driver has no health().
  std::optional<error> health();

  /// What this instance publishes through; null when its driver has no topics.
  const std::shared_ptr<event_hub>& events() const noexcept { return events_; }

 private:
  std::shared_ptr<const plugin_library> library_;
  void* handle_;
  bool closed_ = false;
  std::shared_ptr<event_hub> events_;  // set by plugin_library::create
  friend class plugin_library;
};

}  // namespace labhost::plugin

#endif  // LABHOST_PLUGIN_PLUGIN_LIBRARY_H
