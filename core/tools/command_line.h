// command_line.h: the small argument reader shared by labhost and labctl.
//
// Options are "--name VALUE", "--name=VALUE" or flags ("--json"); everything else is a
// positional word. Unknown options are errors, so a typo never passes silently.
#ifndef LABHOST_TOOLS_COMMAND_LINE_H
#define LABHOST_TOOLS_COMMAND_LINE_H

#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace labhost::tools {

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class command_line {
 public:
  /// `valued`: options that take a value; `flags`: options that do not.
  command_line(int argc, char** argv, int first, const std::set<std::string>& valued,
               const std::set<std::string>& flags) {
    for (int i = first; i < argc; ++i) {
      std::string word = argv[i];
      if (word == "--") {
        for (++i; i < argc; ++i) positional_.push_back(argv[i]);
        break;
      }
      // A lone "-" or a negative number ("-3.5") is a positional word, not an option.
      bool looks_like_option = word.size() > 2 && word.starts_with("--");
      if (!looks_like_option) {
        positional_.push_back(word);
        continue;
      }
      std::string name = word.substr(2);
      std::optional<std::string> inline_value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      if (flags.count(name)) {
        if (inline_value) throw usage_error("--" + name + " takes no value");
        flags_.insert(name);
      } else if (valued.count(name)) {
        if (inline_value) {
          values_[name] = *inline_value;
        } else {
          if (i + 1 >= argc) throw usage_error("--" + name + " needs a value");
          values_[name] = argv[++i];
        }
      } else {
        throw usage_error("unknown option --" + name);
      }
    }
  }

  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  std::string get(const std::string& name, const std::string& fallback) const {
    return get(name).value_or(fallback);
  }
  const std::vector<std::string>& positional() const { return positional_; }

  /// The value of --name as a number of seconds, at least 0; `fallback` when absent. Anything
  /// else ("abc", "1e999", "-1", "5s") is a usage error naming the option.
  double seconds(const std::string& name, double fallback) const {
    return number(name, fallback, "a number of seconds (0 or more)");
  }
  /// The value of --name as a finite number, at least 0 (`expected` says what it counts, for
  /// the usage error); `fallback` when absent.
  double number(const std::string& name, double fallback, const std::string& expected) const {
    auto text = get(name);
    if (!text) return fallback;
    double v = 0;
    const char* end = text->data() + text->size();
    auto [stop, problem] = std::from_chars(text->data(), end, v);
    if (problem != std::errc() || stop != end || !std::isfinite(v) || v < 0)
      throw usage_error("--" + name + ": expected " + expected + ", got \"" + *text + "\"");
    return v;
  }
  /// The value of --name as a whole number from `least` to `most`; `fallback` when absent.
  long long whole_number(const std::string& name, long long fallback, long long least, long long most) const {
    auto text = get(name);
    if (!text) return fallback;
    long long v = 0;
    const char* end = text->data() + text->size();
    auto [stop, problem] = std::from_chars(text->data(), end, v);
    if (problem != std::errc() || stop != end || v < least || v > most)
      throw usage_error("--" + name + ": expected a whole number from " + std::to_string(least) + " to " +
                        std::to_string(most) + ", got \"" + *text + "\"");
    return v;
  }

 private:
  std::set<std::string> flags_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace labhost::tools

#endif  // LABHOST_TOOLS_COMMAND_LINE_H
