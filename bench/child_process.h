// child_process.h: a program the benchmark starts and stops (a labhost daemon, `labhost up`,
// the floor server): stdout is a pipe read line by line (waiting on the pipe, not sleeping),
// stderr goes to a file so a chatty child never blocks on a full pipe.
//
// Not thread-safe: one owner. The child gets SIGKILL when the benchmark dies (PDEATHSIG),
// and from the destructor when it is still running, so no process outlives a run.
#ifndef LABHOST_BENCH_CHILD_PROCESS_H
#define LABHOST_BENCH_CHILD_PROCESS_H

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace labhost::bench {

class child_process {
 public:
  /// Starts argv[0] (a path) with its arguments; stderr is appended to `stderr_file`.
  child_process(const std::vector<std::string>& argv, const std::string& stderr_file);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  /// The next stdout line, or nullopt at EOF or after `timeout` (a safety net, not a sleep).
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  /// Sends `sig` and waits up to `timeout` for the exit, then SIGKILLs. The exit code, or
  /// -signal. Idempotent.
  int stop(int sig, std::chrono::milliseconds timeout);

 private:
  int wait();

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  std::optional<int> status_;
};

/// Reads a whole text file ("" when it cannot be read).
std::string read_text_file(const std::string& path);

}  // namespace labhost::bench

#endif  // LABHOST_BENCH_CHILD_PROCESS_H
