// service.h: one named service of a daemon: a driver plugin, its instance and its methods.
//
// The service resolves a call's keyword arguments against the method's parameter names,
// checks the argument count, and invokes the driver. A service whose plugin did not load or
// whose instrument did not open stays in the daemon as unavailable, with the reason, so the
// daemon keeps serving its other services.
// Thread-safety: call() and close() REQUIRE the caller to serialize them (the daemon runs
// them on the service's strand); name(), ready() and describe() are safe from any thread.
#ifndef LABHOST_SERVICE_SERVICE_H
#define LABHOST_SERVICE_SERVICE_H

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../host/host_config.h"
#include "../plugin/plugin_library.h"
#include "labhost/description.h"
#include "labhost/errors.h"
#include "labhost/value.h"

namespace labhost::service {

class service {
 public:
  /// Loads the plugin and, for single-instance services, opens the instrument. Never throws
  /// for a driver problem: the service is then unavailable and says why.
  service(host::service_config config, const std::filesystem::path& plugin_dir);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  const std::string& name() const noexcept { return config_.name; }
  const host::service_config& config() const noexcept { return config_; }
  bool ready() const noexcept { return unavailable_reason_.empty(); }
  const std::string& unavailable_reason() const noexcept { return unavailable_reason_; }

  service_description describe(bool with_methods) const;

  /// Calls `method` with positional `args` and keyword `kwargs`. On success the encoded
  /// result is appended to `out`. REQUIRES: serialized with other call()/close().
  std::optional<error> call(const std::string& method, const list& args, const map& kwargs,
                            std::vector<std::uint8_t>& out, std::size_t max_result);

  /// Closes the driver instance (the hardware is released). REQUIRES: serialized.
  void close();

 private:
  result<std::vector<std::uint8_t>> resolve_arguments(int method_index, const list& args,
                                                      const map& kwargs) const;

  host::service_config config_;
  std::shared_ptr<const plugin::plugin_library> library_;  // null when the plugin was refused
  std::unique_ptr<plugin::driver_instance> instance_;      // single mode only
  std::string unavailable_reason_;                          // empty when ready
};

}  // namespace labhost::service

#endif  // LABHOST_SERVICE_SERVICE_H
