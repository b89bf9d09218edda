#include "logs_command.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <vector>

#include "logging/rotating_file.h"
#include "stop_signals.h"

namespace labhost::tools {

namespace {

/// Where a reader of one process's log is: the file and how far it has read.
struct followed {
  std::filesystem::path file;
  ino_t inode = 0;
  std::uintmax_t offset = 0;
  std::string partial;  // a line still being written
};

std::vector<std::string> process_names(const std::filesystem::path& folder) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec))
    if (entry.path().extension() == ".log") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

ino_t inode_of(const std::filesystem::path& file, std::uintmax_t* size = nullptr) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return 0;
  if (size) *size = static_cast<std::uintmax_t>(st.st_size);
  return st.st_ino;
}

/// New complete lines of `f` since the last look; starts again at the beginning of a file that
/// was rotated (another inode) or cut.
std::vector<std::string> new_lines(followed& f) {
  std::uintmax_t size = 0;
  const ino_t inode = inode_of(f.file, &size);
  if (inode == 0) return {};
  if (inode != f.inode || size < f.offset) {
    f.inode = inode;
    f.offset = 0;
    f.partial.clear();
  }
  std::vector<std::string> out;
  if (size == f.offset) return out;
  std::ifstream in(f.file, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(f.offset));
  std::string chunk(static_cast<std::size_t>(size - f.offset), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));
  f.offset += chunk.size();
  f.partial += chunk;
  std::size_t newline;
  while ((newline = f.partial.find('\n')) != std::string::npos) {
    out.push_back(f.partial.substr(0, newline));
    f.partial.erase(0, newline + 1);
  }
  return out;
}

}  // namespace

int print_logs(const std::filesystem::path& state_dir, const std::string& name, std::size_t lines, bool follow) {
  const auto folder = state_dir / "logs";
  auto names = process_names(folder);
  if (names.empty()) {
    std::cerr << "labhost logs: no logs in " << folder.string() << " (has labhost up run here?)\n";
    return 1;
  }
  if (!name.empty()) {
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      std::cerr << "labhost logs: no log of \"" << name << "\" (there are: " << known << ")\n";
      return 1;
    }
    names = {name};
  }
  // The last `lines` lines: each process's lines in order, merged by their leading time stamp
  // ("2026-12-03 16:40:01.123456 ..."), which sorts as text.
  std::vector<std::pair<std::string, std::string>> all;  // line, process
  std::map<std::string, followed> readers;
  for (const auto& n : names) {
    auto& reader = readers[n];
    reader.file = folder / (n + ".log");
    std::deque<std::string> tail;
    for (const auto& file : logging::files_oldest_first(reader.file)) {
      std::ifstream in(file);
      std::string text;
      while (std::getline(in, text)) {
        tail.push_back(std::move(text));
        if (tail.size() > lines) tail.pop_front();
      }
    }
    for (auto& t : tail) all.emplace_back(std::move(t), n);
    reader.inode = inode_of(reader.file, &reader.offset);
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (all.size() > lines) all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(lines));
  auto print = [&](const std::string& process, const std::string& text) {
    if (names.size() > 1) std::cout << process << "  ";
    std::cout << text << "\n";
  };
  for (const auto& [text, process] : all) print(process, text);
  std::cout.flush();
  if (!follow) return 0;

  const sigset_t stop_signals = block_stop_signals();
  const timespec period{0, 200'000'000};  // a look five times a second, as tail -f does
  while (sigtimedwait(&stop_signals, nullptr, &period) < 0) {
    if (name.empty())  // a daemon added by a reload has a log of its own now
      for (const auto& n : process_names(folder))
        if (readers.count(n) == 0) readers[n].file = folder / (n + ".log");
    for (auto& [process, reader] : readers)
      for (const auto& text : new_lines(reader)) print(name.empty() ? process : name, text);
    std::cout.flush();
  }
  return 0;
}

}  // namespace labhost::tools
