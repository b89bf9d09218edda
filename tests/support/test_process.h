// test_process.h: child processes for tests: start a program, read its stdout line by line
// (waiting on the pipe, not sleeping), signal it, collect its exit status.
#ifndef LABHOST_TESTS_TEST_PROCESS_H
#define LABHOST_TESTS_TEST_PROCESS_H

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace labhost::testing {

class test_process {
 public:
  /// Starts argv[0] with its arguments. stdout is a pipe; stderr goes to `stderr_file` when
  /// given (so a chatty daemon never blocks on a full pipe), else to a pipe read by run().
  /// With `own_process_group`, the child leads a new process group, so that a test can
  /// kill it and all its descendants at once (kill(-pid, ...)).
  explicit test_process(const std::vector<std::string>& argv, const std::string& stderr_file = "",
                        bool own_process_group = false);
  ~test_process();  // SIGKILLs a child still running
  test_process(const test_process&) = delete;
  test_process& operator=(const test_process&) = delete;

  pid_t pid() const { return pid_; }
  /// The next stdout line, or nullopt at EOF or after `timeout` (a safety net, not a sleep).
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Everything left on stdout and stderr, until the process closes them.
  void read_to_end(std::string& out, std::string& err);
  void signal(int sig);
  /// Waits for exit: the exit code, or -signal when killed by a signal. Idempotent.
  int wait();
  /// Like wait(), but SIGKILLs the child when it has not exited after `timeout`.
  int wait_or_kill(std::chrono::milliseconds timeout);
  bool running();

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  std::string stdout_buffer_;
  std::optional<int> status_;
};

struct run_result {
  int status;  // exit code, or -signal
  std::string out;
  std::string err;
};

/// Runs a program to completion and captures its output.
run_result run(const std::vector<std::string>& argv);

/// Resident memory of process `pid` (VmRSS), in KiB; 0 when it cannot be read.
std::size_t resident_kib(pid_t pid);

/// Built with AddressSanitizer or ThreadSanitizer. They keep freed blocks and shadow state
/// (resident memory says nothing there) and reserve terabytes of address space (no
/// address-space limit can be set).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitizer_build = true;
#else
inline constexpr bool sanitizer_build = false;
#endif

}  // namespace labhost::testing

#endif  // LABHOST_TESTS_TEST_PROCESS_H
