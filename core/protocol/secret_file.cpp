#include "secret_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>

namespace labhost::protocol {

result<std::string> read_secret_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) return error{errc::auth_failed, "cannot read " + file.string() + ": a folder"};
  std::ifstream in(file, std::ios::binary);
  if (!in) return error{errc::auth_failed, "cannot read " + file.string() + ": " + std::strerror(errno)};
  std::string line;
  std::getline(in, line);
  if (in.bad()) return error{errc::auth_failed, "cannot read " + file.string() + ": " + std::strerror(errno)};
  constexpr const char* blanks = " \t\r";
  const auto first = line.find_first_not_of(blanks);
  if (first == std::string::npos)
    return error{errc::auth_failed, file.string() + " holds no secret (its first line is blank)"};
  const auto last = line.find_last_not_of(blanks);
  return line.substr(first, last - first + 1);
}

}  // namespace labhost::protocol
