#include "service.h"

#include "labhost/value_codec.h"

namespace labhost::service {

service::service(host::service_config config, const std::filesystem::path& plugin_dir)
    : config_(std::move(config)) {
  auto loaded = plugin::plugin_library::load(host::plugin_file(plugin_dir, config_.driver));
  if (auto* refused = std::get_if<plugin::load_error>(&loaded)) {
    unavailable_reason_ = "plugin refused (" +
                          std::string(plugin::load_failure_name(refused->failure)) +
                          "): " + refused->message;
    return;
  }
  library_ = std::get<0>(std::move(loaded));
  if (config_.mode == host::instance_mode::single) {
    auto created = library_->create(config_.params);
    if (!created) {
      unavailable_reason_ = "instrument did not open: " + created.err().to_string();
      return;
    }
    instance_ = std::move(*created);
  }
}

service::~service() = default;

service_description service::describe(bool with_methods) const {
  service_description d;
  d.name = config_.name;
  d.driver = config_.driver;
  d.description = config_.description;
  d.state = ready() ? "ready" : "unavailable";
  d.reason = unavailable_reason_;
  if (library_) {
    const auto& info = library_->info();
    d.driver_version = info.version;
    d.vendor = info.vendor;
    if (d.description.empty()) d.description = info.description;
    if (with_methods) d.methods = info.methods;
  }
  return d;
}

result<std::vector<std::uint8_t>> service::resolve_arguments(int method_index, const list& args,
                                                             const map& kwargs) const {
  const auto& m = library_->info().methods[static_cast<std::size_t>(method_index)];
  const std::size_t arity = m.params.size();
  auto signature = [&] { return config_.name + "." + m.name + "()"; };
  if (args.size() > arity)
    return error{errc::bad_arguments, signature() + " takes " + std::to_string(arity) +
                                          " argument(s), " + std::to_string(args.size()) +
                                          " given"};
  if (kwargs.empty() && args.size() == arity) return encode(args);

  std::vector<const value*> slots(arity, nullptr);
  for (std::size_t i = 0; i < args.size(); ++i) slots[i] = &args[i];
  for (const auto& [key, v] : kwargs) {
    std::size_t i = 0;
    while (i < arity && m.params[i].name != key) ++i;
    if (i == arity)
      return error{errc::bad_arguments, signature() + " has no parameter '" + key + "'"};
    if (slots[i] != nullptr)
      return error{errc::bad_arguments, signature() + " got two values for '" + key + "'"};
    slots[i] = &v;
  }
  // Encode the list by hand: the slots point into the request, so nothing is copied first.
  std::vector<std::uint8_t> out{static_cast<std::uint8_t>(value_kind::list)};
  codec_detail::put_u32(out, static_cast<std::uint32_t>(arity));
  for (std::size_t i = 0; i < arity; ++i) {
    if (slots[i] == nullptr)
      return error{errc::bad_arguments, signature() + " missing argument '" + m.params[i].name + "'"};
    encode(*slots[i], out);
  }
  return out;
}

std::optional<error> service::call(const std::string& method, const list& args,
                                   const map& kwargs, std::vector<std::uint8_t>& out,
                                   std::size_t max_result) {
  if (!ready()) return error{errc::service_unavailable, config_.name + ": " + unavailable_reason_};
  int index = library_->method_index(method);
  if (index < 0)
    return error{errc::no_such_method, config_.name + " (" + config_.driver + ") has no method '" +
                                           method + "'"};
  auto encoded_args = resolve_arguments(index, args, kwargs);
  if (!encoded_args) return encoded_args.err();

  if (config_.mode == host::instance_mode::percall) {
    auto created = library_->create(config_.params);
    if (!created) return created.err();
    return (*created)->invoke(static_cast<std::uint32_t>(index), *encoded_args, out, max_result);
  }
  if (!instance_) return error{errc::service_unavailable, config_.name + ": no driver instance"};
  return instance_->invoke(static_cast<std::uint32_t>(index), *encoded_args, out, max_result);
}

void service::close() {
  if (instance_) instance_->close();
}

}  // namespace labhost::service
