// logs_command.h: `labhost logs`: what the nameserver and each daemon of a host said, from
// the files `labhost up` keeps in STATE_DIR/logs (one per process, rotated by size).
#ifndef LABHOST_TOOLS_LOGS_COMMAND_H
#define LABHOST_TOOLS_LOGS_COMMAND_H

#include <cstddef>
#include <filesystem>
#include <string>

namespace labhost::tools {

/// Prints the last `lines` lines of the log of `name` (every process's, merged in time order,
/// each line after its name, when `name` is empty); with `follow`, then prints lines as they
/// are written until SIGINT/SIGTERM. The exit status.
int print_logs(const std::filesystem::path& state_dir, const std::string& name, std::size_t lines, bool follow);

}  // namespace labhost::tools

#endif  // LABHOST_TOOLS_LOGS_COMMAND_H
