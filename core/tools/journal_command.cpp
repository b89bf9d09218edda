#include "journal_command.h"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <ctime>
#include <fstream>
#include <iostream>
#include <vector>

#include "logging/rotating_file.h"
#include "protocol/json_value.h"

namespace labhost::tools {

namespace json = boost::json;

std::optional<double> parse_since(const std::string& text, double now) {
  if (text.size() >= 2) {
    double amount = 0;
    const char* end = text.data() + text.size() - 1;
    auto [stop, problem] = std::from_chars(text.data(), end, amount);
    if (problem == std::errc() && stop == end && amount >= 0) {
      switch (text.back()) {
        case 's': return now - amount;
        case 'm': return now - amount * 60;
        case 'h': return now - amount * 3600;
        case 'd': return now - amount * 86400;
        default: break;
      }
    }
  }
  for (const char* format : {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
    std::tm t{};
    const char* rest = ::strptime(text.c_str(), format, &t);
    if (rest != nullptr && *rest == '\0') {
      t.tm_isdst = -1;
      return static_cast<double>(std::mktime(&t));
    }
  }
  return std::nullopt;
}

namespace {

std::string local_time(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm local{};
  ::localtime_r(&t, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

std::string text_of(const json::object& record, std::string_view key) {
  if (auto* v = record.if_contains(key); v && v->is_string()) return std::string(v->get_string());
  return "";
}

/// "set_wavelength(1550.5, mw=12.5)" from a call's {args, kwargs}.
std::string call_text(const json::object& record) {
  std::string out = text_of(record, "method") + "(";
  bool first = true;
  if (auto* arguments = record.if_contains("arguments"); arguments && arguments->is_object()) {
    if (auto* args = arguments->as_object().if_contains("args"); args && args->is_array())
      for (const auto& a : args->as_array()) {
        out += (first ? "" : ", ") + protocol::to_json_text(protocol::json_to_value(a));
        first = false;
      }
    if (auto* kwargs = arguments->as_object().if_contains("kwargs"); kwargs && kwargs->is_object())
      for (const auto& [k, v] : kwargs->as_object()) {
        out += (first ? "" : ", ") + std::string(k) + "=" + protocol::to_json_text(protocol::json_to_value(v));
        first = false;
      }
  }
  return out + ")";
}

}  // namespace

int print_journal(const std::filesystem::path& state_dir, const journal_filter& filter, bool as_json) {
  const auto folder = state_dir / "journal";
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec)) {
    std::cerr << "labhost journal: no journal in " << folder.string() << " (has labhost run here?)\n";
    return 1;
  }
  std::vector<std::string> daemons;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec))
    if (entry.path().extension() == ".jsonl") daemons.push_back(entry.path().stem().string());
  std::sort(daemons.begin(), daemons.end());
  if (!filter.daemon.empty() && std::find(daemons.begin(), daemons.end(), filter.daemon) == daemons.end()) {
    std::cerr << "labhost journal: no journal of a daemon \"" << filter.daemon << "\" in " << folder.string() << "\n";
    return 1;
  }
  struct line {
    double time;
    std::string daemon;
    json::object record;
  };
  std::vector<line> found;
  for (const auto& daemon : daemons) {
    if (!filter.daemon.empty() && daemon != filter.daemon) continue;
    for (const auto& file : logging::files_oldest_first(folder / (daemon + ".jsonl"))) {
      std::ifstream in(file);
      std::string text;
      while (std::getline(in, text)) {
        json::value parsed = json::parse(text, ec);
        if (ec || !parsed.is_object()) continue;  // a line cut short by a crash
        auto& record = parsed.as_object();
        const double time = record.contains("time") ? record.at("time").to_number<double>() : 0;
        if (filter.since && time < *filter.since) continue;
        if (!filter.service.empty() && text_of(record, "service") != filter.service) continue;
        found.push_back({time, daemon, std::move(record)});
      }
    }
  }
  std::stable_sort(found.begin(), found.end(), [](const line& a, const line& b) { return a.time < b.time; });
  for (auto& l : found) {
    if (as_json) {
      l.record["daemon"] = l.daemon;
      // labhost's own JSON: numbers as written (1550.5, not 1.5505E3)
      std::cout << protocol::to_json_text(protocol::json_to_value(l.record)) << "\n";
      continue;
    }
    const std::string action = text_of(l.record, "action");
    std::cout << local_time(l.time) << "  " << l.daemon << "/" << text_of(l.record, "service") << "  ";
    if (action == "call")
      std::cout << "call " << call_text(l.record);
    else if (action == "subscribe")
      std::cout << "subscribe " << text_of(l.record, "topic");
    else if (action == "records_dropped")
      std::cout << "(" << json::serialize(l.record["count"]) << " records dropped: the journal could not keep up)";
    else
      std::cout << action;
    if (action != "records_dropped") {
      std::cout << "  by " << text_of(l.record, "client");
      if (auto* pid = l.record.if_contains("pid")) std::cout << " (pid " << json::serialize(*pid);
      std::cout << ", " << text_of(l.record, "address");
      if (auto cert = text_of(l.record, "certificate"); !cert.empty()) std::cout << ", certificate " << cert;
      std::cout << ")  " << text_of(l.record, "outcome");
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace labhost::tools
