#include "name_registry.h"

namespace labhost::naming {
namespace {

/// Arguments by position or keyword, for the nameserver's few fixed signatures.
class arguments {
 public:
  arguments(const std::string& method, const list& args, const map& kwargs,
            std::vector<std::string> names)
      : method_(method), names_(std::move(names)), values_(names_.size(), nullptr) {
    if (args.size() > names_.size()) problem_ = method + "() takes " + std::to_string(names_.size()) + " argument(s)";
    for (std::size_t i = 0; i < args.size() && i < names_.size(); ++i) values_[i] = &args[i];
    for (const auto& [key, v] : kwargs) {
      std::size_t i = 0;
      while (i < names_.size() && names_[i] != key) ++i;
      if (i == names_.size()) problem_ = method + "() has no parameter '" + key + "'";
      else values_[i] = &v;
    }
  }
  std::optional<error> problem() const {
    if (problem_.empty()) return std::nullopt;
    return error{errc::bad_arguments, problem_};
  }
  const value* get(std::size_t i) const { return values_[i]; }
  std::optional<error> text(std::size_t i, std::string& out, bool required) const {
    if (values_[i] == nullptr) {
      if (!required) return std::nullopt;
      return error{errc::bad_arguments, method_ + "() missing argument '" + names_[i] + "'"};
    }
    if (!values_[i]->is_string())
      return error{errc::bad_arguments, "parameter '" + names_[i] + "': expected string, got " +
                                            std::string(kind_name(values_[i]->kind()))};
    out = values_[i]->as_string();
    return std::nullopt;
  }

 private:
  std::string method_;
  std::vector<std::string> names_;
  std::vector<const value*> values_;
  std::string problem_;
};

bool metadata_matches(const value& metadata, const map& filter) {
  for (const auto& [key, wanted] : filter) {
    const value* have = metadata.find(key);
    if (have == nullptr || !(*have == wanted)) return false;
  }
  return true;
}

}  // namespace

value name_entry::to_value() const {
  return map{{"name", name}, {"address", address}, {"metadata", metadata}, {"owner", owner}};
}

std::optional<error> name_registry::register_name(const service::session_info& owner,
                                                  const std::string& name, const std::string& address,
                                                  value metadata) {
  if (name.empty() || name.size() > 128)
    return error{errc::bad_arguments, "a name has 1 to 128 characters"};
  if (!address.starts_with("lab://"))
    return error{errc::bad_arguments, "address \"" + address + "\" is not lab://HOST:PORT/SERVICE"};
  if (!metadata.is_map()) return error{errc::bad_arguments, "metadata must be a map"};
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it != entries_.end() && it->second.owner_token != owner.token)
    return error{errc::name_taken, "\"" + name + "\" is registered by " + it->second.owner + " at " +
                                       it->second.address};
  entries_[name] = name_entry{name, address, std::move(metadata), owner.client_name, owner.token};
  return std::nullopt;
}

std::optional<name_entry> name_registry::lookup(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

std::vector<name_entry> name_registry::find_names(std::string_view prefix, const map& filter) const {
  std::lock_guard lock(mutex_);
  std::vector<name_entry> out;
  for (const auto& [name, entry] : entries_)
    if (name.starts_with(prefix) && metadata_matches(entry.metadata, filter)) out.push_back(entry);
  return out;
}

std::optional<error> name_registry::remove(const std::string& token, const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return error{errc::no_such_name, "no name \"" + name + "\""};
  if (it->second.owner_token != token)
    return error{errc::not_authorised, "\"" + name + "\" is registered by " + it->second.owner};
  entries_.erase(it);
  return std::nullopt;
}

std::size_t name_registry::drop_session(const std::string& token) {
  std::lock_guard lock(mutex_);
  return std::erase_if(entries_, [&](const auto& e) { return e.second.owner_token == token; });
}

std::vector<method_description> name_registry::methods() {
  return {
      {"register", {{"name", "string"}, {"address", "string"}, {"metadata", "map"}}, "null",
       "Registers name -> address for this session; it disappears when the session ends."},
      {"lookup", {{"name", "string"}}, "map", "The address and metadata of a name."},
      {"list", {{"prefix", "string"}, {"metadata", "map"}}, "list",
       "Names starting with prefix whose metadata contains every given key and value."},
      {"remove", {{"name", "string"}}, "null", "Removes a name this session registered."},
  };
}

result<value> name_registry::call(const service::session_info& caller, const std::string& method,
                                  const list& args, const map& kwargs) {
  if (method == "register") {
    arguments a(method, args, kwargs, {"name", "address", "metadata"});
    if (auto p = a.problem()) return *p;
    std::string name, address;
    if (auto e = a.text(0, name, true)) return *e;
    if (auto e = a.text(1, address, true)) return *e;
    value metadata = a.get(2) ? *a.get(2) : value(map{});
    if (auto e = register_name(caller, name, address, std::move(metadata))) return *e;
    return value(nullptr);
  }
  if (method == "lookup") {
    arguments a(method, args, kwargs, {"name"});
    if (auto p = a.problem()) return *p;
    std::string name;
    if (auto e = a.text(0, name, true)) return *e;
    auto entry = lookup(name);
    if (!entry) return error{errc::no_such_name, "no name \"" + name + "\" on this nameserver"};
    return entry->to_value();
  }
  if (method == "list") {
    arguments a(method, args, kwargs, {"prefix", "metadata"});
    if (auto p = a.problem()) return *p;
    std::string prefix;
    if (auto e = a.text(0, prefix, false)) return *e;
    map filter;
    if (const value* f = a.get(1)) {
      if (!f->is_map()) return error{errc::bad_arguments, "parameter 'metadata': expected map"};
      filter = f->as_map();
    }
    list out;
    for (const auto& entry : find_names(prefix, filter)) out.push_back(entry.to_value());
    return value(std::move(out));
  }
  if (method == "remove") {
    arguments a(method, args, kwargs, {"name"});
    if (auto p = a.problem()) return *p;
    std::string name;
    if (auto e = a.text(0, name, true)) return *e;
    if (auto e = remove(caller.token, name)) return *e;
    return value(nullptr);
  }
  return error{errc::no_such_method, "the nameserver has no method '" + method + "'"};
}

}  // namespace labhost::naming
