// libFuzzer target: the host.json loader, on any text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <unistd.h>

#include "host/host_config.h"

namespace {
std::filesystem::path folder;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A host folder with a plugins/ of empty files, so that driver names can resolve.
  folder = std::filesystem::temp_directory_path() / ("labhost-fuzz-" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder / "plugins");
  for (const char* name : {"sim_laser.so", "sim_stage.so", "sim_camera.so"})
    std::ofstream(folder / "plugins" / name) << "";
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(folder, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto config = labhost::host::parse_host_config(text, folder / "host.json");
    for (const auto& d : config.daemons) (void)labhost::host::fingerprint(d, config);
  } catch (const labhost::host::config_error&) {
    // the expected outcome for nearly every input: a clear error, nothing else
  }
  return 0;
}
