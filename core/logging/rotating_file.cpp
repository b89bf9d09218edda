#include "rotating_file.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace labhost::logging {

rotating_file::rotating_file(std::filesystem::path file, std::uint64_t rotate_bytes, unsigned keep_files)
    : file_(std::move(file)), rotate_bytes_(rotate_bytes), keep_files_(std::max(1u, keep_files)) {
  std::error_code ec;
  std::filesystem::create_directories(file_.parent_path(), ec);
  out_.open(file_, std::ios::app);
  if (!out_) throw std::runtime_error("cannot open " + file_.string() + " for writing");
  written_ = std::filesystem::file_size(file_, ec);
  if (ec) written_ = 0;
}

bool rotating_file::write(std::string_view text) {
  if (written_ > 0 && written_ + text.size() > rotate_bytes_) rotate();
  out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  out_.flush();
  if (!out_) {
    out_.clear();
    return false;
  }
  written_ += text.size();
  return true;
}

void rotating_file::rotate() {
  out_.close();
  std::error_code ec;
  // NAME.KEEP goes; each older file moves up by one; the current one becomes NAME.1.
  std::filesystem::remove(file_.string() + "." + std::to_string(keep_files_), ec);
  for (unsigned i = keep_files_; i > 1; --i)
    std::filesystem::rename(file_.string() + "." + std::to_string(i - 1), file_.string() + "." + std::to_string(i), ec);
  std::filesystem::rename(file_, file_.string() + ".1", ec);
  out_.open(file_, std::ios::app);
  written_ = 0;
}

std::vector<std::filesystem::path> files_oldest_first(const std::filesystem::path& file) {
  std::vector<std::filesystem::path> rotated;
  std::error_code ec;
  for (unsigned i = 1; i < 10'000; ++i) {
    std::filesystem::path older = file.string() + "." + std::to_string(i);
    if (!std::filesystem::exists(older, ec)) break;
    rotated.push_back(older);
  }
  std::reverse(rotated.begin(), rotated.end());
  if (std::filesystem::exists(file, ec)) rotated.push_back(file);
  return rotated;
}

}  // namespace labhost::logging
