// log.h: labhost's logging, on Boost.Log, kept behind a small interface so that Boost.Log's
// heavy headers stay in log.cpp.
//
// Each record carries time, severity, the process role ("daemon main", "labctl", ...) and,
// where there is one, the service. Records go to stderr (journald under systemd).
// Thread-safe.
#ifndef LABHOST_LOGGING_LOG_H
#define LABHOST_LOGGING_LOG_H

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

namespace labhost::logging {

enum class severity { debug, info, warning, error };

/// Sets the process role shown on every record and the lowest severity written.
void init(std::string_view role, severity minimum = severity::info);
/// Parses "debug", "info", "warning", "error"; throws std::invalid_argument otherwise.
severity parse_severity(std::string_view text);

void write(severity level, std::string_view service, std::string_view message);

/// Also writes every record to `file`, rotated when it reaches `rotate_bytes`, keeping the
/// newest `keep_files` rotated files beside it. Throws std::runtime_error when it cannot.
void add_file(const std::string& file, std::uint64_t rotate_bytes, unsigned keep_files);

/// Writes a line formatted elsewhere (a child process's log line) as it is.
void write_raw(std::string_view line);

/// Stream-style helper: log_line(severity::info, "laser") << "opened " << x;
class log_line {
 public:
  log_line(severity level, std::string_view service = {}) : level_(level), service_(service) {}
  ~log_line() { write(level_, service_, stream_.str()); }
  template <typename T>
  log_line& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  severity level_;
  std::string service_;
  std::ostringstream stream_;
};

}  // namespace labhost::logging

#define LABHOST_LOG(LEVEL) ::labhost::logging::log_line(::labhost::logging::severity::LEVEL)
#define LABHOST_LOG_SERVICE(LEVEL, SERVICE) \
  ::labhost::logging::log_line(::labhost::logging::severity::LEVEL, SERVICE)

#endif  // LABHOST_LOGGING_LOG_H
