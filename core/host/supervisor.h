// supervisor.h: `labhost up`: runs the nameserver and every daemon of host.json as child
// processes, and keeps them running.
//
// A child that exits is restarted after a delay that starts at 0.2 s and doubles up to 30 s;
// one that keeps exiting soon after it starts is marked crash_loop, with its last error, and
// still retried every 30 s. Children get SIGTERM when the supervisor dies (PR_SET_PDEATHSIG),
// so a killed supervisor leaves no daemon holding an instrument. `labhost ps`, `down` and
// `reload` talk to the supervisor over a Unix socket in the state directory (mode 0600); a
// lock file there keeps a second `labhost up` on the same state directory from starting.
// Single-threaded: one poll() loop handles signals, children's output and control requests.
#ifndef LABHOST_HOST_SUPERVISOR_H
#define LABHOST_HOST_SUPERVISOR_H

#include <filesystem>
#include <string>

namespace labhost::host {

/// Runs until SIGINT/SIGTERM or `labhost down`; the exit status. Throws config_error for a
/// bad host.json and std::runtime_error when another supervisor holds the state directory.
int run_supervisor(const std::filesystem::path& config_file, const std::string& log_level_override);

/// The control socket of the supervisor of `config_file`.
std::filesystem::path control_socket_path(const std::filesystem::path& config_file);

/// Sends one control request ({"command": "ps"|"down"|"reload"}) and returns the JSON reply.
/// Throws std::runtime_error when no supervisor answers.
std::string control_request(const std::filesystem::path& config_file, const std::string& command);

}  // namespace labhost::host

#endif  // LABHOST_HOST_SUPERVISOR_H
