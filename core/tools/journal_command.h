// journal_command.h: `labhost journal`: the daemons' audit journals (server/journal.h), read
// back from STATE_DIR/journal, filtered, as text or JSON lines.
#ifndef LABHOST_TOOLS_JOURNAL_COMMAND_H
#define LABHOST_TOOLS_JOURNAL_COMMAND_H

#include <filesystem>
#include <optional>
#include <string>

namespace labhost::tools {

struct journal_filter {
  std::string daemon;   // empty: every daemon
  std::string service;  // empty: every service
  std::optional<double> since;  // Unix seconds
};

/// "2026-12-03T16:00:00" or "2026-12-03 16:00" (local time), "2026-12-03" (midnight), or a
/// time ago: "90s", "30m", "2h", "7d". Nothing when it is none of these.
std::optional<double> parse_since(const std::string& text, double now);

/// Prints the matching records, oldest first; the exit status.
int print_journal(const std::filesystem::path& state_dir, const journal_filter& filter, bool as_json);

}  // namespace labhost::tools

#endif  // LABHOST_TOOLS_JOURNAL_COMMAND_H
