#include "plugins_command.h"

#include <algorithm>
#include <boost/json.hpp>
#include <iostream>
#include <vector>

#include "plugin/plugin_library.h"

namespace labhost::tools {

int list_plugins(const std::filesystem::path& dir, bool as_json) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::cerr << "labhost plugins: " << dir.string() << " is not a folder\n";
    return 2;
  }
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.is_regular_file() && entry.path().filename() != "README.md")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());

  boost::json::array report;
  int refused = 0;
  for (const auto& file : files) {
    boost::json::object entry;
    entry["file"] = file.filename().string();
    auto loaded = plugin::plugin_library::load(file);
    if (!loaded) {
      const plugin::load_error* e = &loaded.err();
      ++refused;
      entry["status"] = "refused";
      entry["failure"] = std::string(plugin::load_failure_name(e->failure));
      entry["reason"] = e->message;
      if (!as_json) std::cout << file.filename().string() << ": refused: " << e->message << "\n";
    } else {
      const auto& info = (*loaded)->info();
      std::string abi = std::to_string(info.abi_version >> 16) + "." +
                        std::to_string(info.abi_version & 0xFFFF);
      entry["status"] = "ok";
      entry["name"] = info.name;
      entry["version"] = info.version;
      entry["vendor"] = info.vendor;
      entry["description"] = info.description;
      entry["abi"] = abi;
      boost::json::array methods;
      for (const auto& m : info.methods) {
        boost::json::array params;
        for (const auto& p : m.params) params.push_back({{"name", p.name}, {"type", p.type}});
        methods.push_back({{"name", m.name}, {"params", params}, {"returns", m.returns}, {"doc", m.doc}});
      }
      entry["methods"] = methods;
      if (!as_json) {
        std::cout << file.filename().string() << ": " << info.name << " " << info.version << " ("
                  << info.vendor << "), ABI " << abi << "\n";
        for (const auto& m : info.methods) {
          std::string params;
          for (const auto& p : m.params) params += (params.empty() ? "" : ", ") + p.name + ": " + p.type;
          std::cout << "    " << m.name << "(" << params << ") -> " << m.returns << "  " << m.doc << "\n";
        }
      }
    }
    report.push_back(entry);
  }
  if (as_json) std::cout << boost::json::serialize(report) << "\n";
  return refused == 0 ? 0 : 1;
}

}  // namespace labhost::tools
