// rotating_file.h: a file written line by line, rotated by size: NAME, then NAME.1 (the newest
// older one) up to NAME.KEEP. The audit journal and each child's log in `labhost up` use it;
// `labhost journal` and `labhost logs` read the files back, oldest first (files_oldest_first).
// Not thread-safe: one writer.
#ifndef LABHOST_LOGGING_ROTATING_FILE_H
#define LABHOST_LOGGING_ROTATING_FILE_H

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>

namespace labhost::logging {

class rotating_file {
 public:
  /// Opens (appending to) `file`, creating its folder. Throws std::runtime_error when it cannot.
  rotating_file(std::filesystem::path file, std::uint64_t rotate_bytes, unsigned keep_files);

  /// Appends `text` (whole lines), rotating first when it would make the file larger than
  /// rotate_bytes. False when the write failed (a full disk); the next write tries again.
  bool write(std::string_view text);

  const std::filesystem::path& path() const noexcept { return file_; }

 private:
  void rotate();

  std::filesystem::path file_;
  std::uint64_t rotate_bytes_;
  unsigned keep_files_;
  std::ofstream out_;
  std::uint64_t written_ = 0;  // bytes in the current file
};

/// The files of a rotating file that exist, oldest first: NAME.KEEP ... NAME.1, NAME.
std::vector<std::filesystem::path> files_oldest_first(const std::filesystem::path& file);

}  // namespace labhost::logging

#endif  // LABHOST_LOGGING_ROTATING_FILE_H
