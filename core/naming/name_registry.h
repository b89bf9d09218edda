// name_registry.h: the nameserver's table of names: service name -> address and metadata.
//
// A registration belongs to the session that made it: it disappears when that session ends,
// and another session cannot overwrite a live name (name_taken). Thread-safe (mutex_).
#ifndef LABHOST_NAMING_NAME_REGISTRY_H
#define LABHOST_NAMING_NAME_REGISTRY_H

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../service/session_info.h"
#include "labhost/description.h"
#include "labhost/errors.h"
#include "labhost/value.h"

namespace labhost::naming {

struct name_entry {
  std::string name;
  std::string address;  // "lab://HOST:PORT/SERVICE"
  value metadata = map{};
  std::string owner;    // client name of the registering session
  std::string owner_token;

  value to_value() const;
};

class name_registry {
 public:
  /// Registers or refreshes `name` for `owner`. Errors: name_taken (another live session
  /// holds it), bad_arguments (empty name, address not lab://...).
  std::optional<error> register_name(const service::session_info& owner, const std::string& name,
                                     const std::string& address, value metadata);
  std::optional<name_entry> lookup(const std::string& name) const;
  /// Names starting with `prefix` whose metadata contains every key/value of `filter`.
  std::vector<name_entry> find_names(std::string_view prefix, const map& filter) const;
  /// Errors: no_such_name, not_authorised (registered by another session).
  std::optional<error> remove(const std::string& token, const std::string& name);
  /// Removes every name of a session that ended; the number removed.
  std::size_t drop_session(const std::string& token);

  /// The nameserver's methods, as describe shows them.
  static std::vector<method_description> methods();
  /// Runs one nameserver method for `caller`.
  result<value> call(const service::session_info& caller, const std::string& method,
                     const list& args, const map& kwargs);

 private:
  mutable std::mutex mutex_;  // guards entries_
  std::map<std::string, name_entry, std::less<>> entries_;
};

}  // namespace labhost::naming

#endif  // LABHOST_NAMING_NAME_REGISTRY_H
