// plugins_command.h: `labhost plugins`: what each file of a plugin folder is, or why it
// would be refused.
#ifndef LABHOST_TOOLS_PLUGINS_COMMAND_H
#define LABHOST_TOOLS_PLUGINS_COMMAND_H

#include <filesystem>

namespace labhost::tools {

/// Prints one entry per file of `dir`; returns the exit status (0 when every file loads).
int list_plugins(const std::filesystem::path& dir, bool as_json);

}  // namespace labhost::tools

#endif  // LABHOST_TOOLS_PLUGINS_COMMAND_H
