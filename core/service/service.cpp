#include "service.h"

#include <ctime>

#include <limits>

#include "../protocol/value_versions.h"
#include "labhost/value_codec.h"

namespace labhost::service {

bool secrets_equal(std::string_view given, std::string_view expected) noexcept {
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i)
    difference |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
  return difference == 0;
}

std::string describe_holder(const lock_holder& lock) {
  std::time_t t = std::chrono::system_clock::to_time_t(lock.since);
  std::tm utc{};
  ::gmtime_r(&t, &utc);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return lock.holder.client_name + " (pid " + std::to_string(lock.holder.pid) + ", " +
         lock.holder.address + ") since " + when;
}

service::service(host::service_config config, const std::filesystem::path& plugin_dir,
                 std::size_t max_event_bytes)
    : config_(std::move(config)), max_event_bytes_(max_event_bytes) {
  auto loaded = plugin::plugin_library::load(host::plugin_file(plugin_dir, config_.driver));
  if (!loaded) {
    state_ = state::unavailable;
    reason_ = "plugin refused (" + std::string(plugin::load_failure_name(loaded.err().failure)) + "): " +
              loaded.err().message;
    return;
  }
  library_ = std::move(*loaded);
  if (config_.mode == host::instance_mode::single) try_open();
}

bool service::try_open() {
  if (!library_ || single_) return static_cast<bool>(single_);
  auto created = library_->create(config_.params, max_event_bytes_);
  std::lock_guard lock(state_mutex_);
  if (!created) {
    // Parameters that do not fit are a host.json mistake, not an instrument switched off:
    // retrying cannot help.
    bool config_problem = created.err().code == errc::bad_arguments;
    state_ = config_problem ? state::unavailable : state::waiting;
    reason_ = (config_problem ? "bad parameters: " : "instrument did not open: ") + created.err().to_string();
    return false;
  }
  single_ = std::move(*created);
  state_ = state::ready;
  reason_.clear();
  return true;
}

service::state service::current_state() const {
  std::lock_guard lock(state_mutex_);
  return state_;
}

std::string service::unavailable_reason() const {
  std::lock_guard lock(state_mutex_);
  return reason_;
}

service::~service() = default;

service_description service::describe(bool with_methods) const {
  service_description d;
  d.name = config_.name;
  d.driver = config_.driver;
  d.description = config_.description;
  {
    std::lock_guard lock(state_mutex_);
    d.state = state_ == state::ready ? "ready" : state_ == state::waiting ? "waiting" : "unavailable";
    d.reason = reason_;
  }
  if (library_) {
    const auto& info = library_->info();
    d.driver_version = info.version;
    d.vendor = info.vendor;
    if (d.description.empty()) d.description = info.description;
    if (with_methods) {
      d.methods = info.methods;
      d.topics = info.topics;
    }
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

result<plugin::driver_instance*> service::instance_for(const session_info& caller) {
  switch (config_.mode) {
    case host::instance_mode::single:
      if (!single_) return error{errc::service_unavailable, config_.name + ": no driver instance"};
      return single_.get();
    case host::instance_mode::session: {
      auto& instance = per_session_[caller.token];
      if (!instance) {
        auto created = library_->create(config_.params, max_event_bytes_);
        if (!created) {
          per_session_.erase(caller.token);
          return created.err();
        }
        instance = std::move(*created);
      }
      return instance.get();
    }
    case host::instance_mode::percall:
      break;
  }
  return error{errc::internal_error, "percall instances are made by call()"};
}

std::optional<error> service::call(const session_info& caller, const std::string& method,
                                   const list& args, const map& kwargs,
                                   protocol::frame_buffer& out, std::size_t max_result) {
  if (auto refusal = lock_refusal(caller.token)) return refusal;
  if (!ready()) return error{errc::service_unavailable, config_.name + ": " + unavailable_reason()};
  int index = library_->method_index(method);
  if (index < 0)
    return error{errc::no_such_method, config_.name + " (" + config_.driver + ") has no method '" +
                                           method + "'"};
  auto encoded_args = resolve_arguments(index, args, kwargs);
  if (!encoded_args) return encoded_args.err();
  if (library_->abi_minor() < 2 && protocol::uses_version_2(*encoded_args)) {
    // A driver built before ABI 1.2 decodes with the version-1 codec (docs/protocol.md,
    // "Older peers"): shaped arrays go flat; what version 1 cannot express is refused here.
    auto decoded = decode(*encoded_args, decode_limits{std::numeric_limits<std::size_t>::max(),
                                                       std::numeric_limits<std::size_t>::max()});
    if (!decoded.ok()) return error{errc::internal_error, "arguments: " + decoded.message()};
    if (auto refused = protocol::to_version_1(decoded.decoded))
      return error{errc::bad_arguments, "the driver of " + config_.name + " is built for ABI 1." +
                                            std::to_string(library_->abi_minor()) + " and cannot take " + *refused +
                                            " arrays"};
    *encoded_args = encode(decoded.decoded);
  }
  const auto method_index = static_cast<std::uint32_t>(index);

  if (config_.mode == host::instance_mode::percall) {
    auto created = library_->create(config_.params, max_event_bytes_);
    if (!created) return created.err();
    return (*created)->invoke(method_index, *encoded_args, out, max_result);  // then closed
  }
  auto instance = instance_for(caller);
  if (!instance) return instance.err();
  return (*instance)->invoke(method_index, *encoded_args, out, max_result);
}

void service::end_session(const std::string& token) { per_session_.erase(token); }

std::vector<topic_description> service::topics() const {
  return library_ ? library_->info().topics : std::vector<topic_description>{};
}

result<std::shared_ptr<plugin::event_hub>> service::events_for(const session_info& caller) {
  auto none = [&](const std::string& why) -> error {
    return {errc::no_such_topic, config_.name + " publishes nothing: " + why};
  };
  if (!library_) return error{errc::service_unavailable, config_.name + ": " + unavailable_reason()};
  if (library_->info().topics.empty()) return none("its driver " + config_.driver + " has no topics");
  if (config_.mode == host::instance_mode::percall)
    return none("a percall service has no instance between calls to publish from");
  if (!ready()) return error{errc::service_unavailable, config_.name + ": " + unavailable_reason()};
  auto instance = instance_for(caller);
  if (!instance) return instance.err();
  return (*instance)->events();
}

void service::close() {
  if (single_) single_->close();
  per_session_.clear();
}

service::lock_result service::try_lock(const session_info& who) {
  std::lock_guard lock(lock_mutex_);
  if (lock_) return lock_->holder.token == who.token ? lock_result::already_yours : lock_result::held_by_other;
  lock_ = lock_holder{who, std::chrono::system_clock::now()};
  forced_out_.erase(who.token);
  return lock_result::granted;
}

std::optional<error> service::unlock(const std::string& token) {
  std::lock_guard lock(lock_mutex_);
  if (!lock_) return error{errc::not_lock_owner, config_.name + " is not locked"};
  if (lock_->holder.token != token)
    return error{errc::not_lock_owner, config_.name + " is locked by " + describe_holder(*lock_) +
                                           ", not by this session"};
  lock_.reset();
  return std::nullopt;
}

std::optional<lock_holder> service::force_unlock() {
  std::lock_guard lock(lock_mutex_);
  auto former = std::move(lock_);
  lock_.reset();
  if (former) forced_out_.insert(former->holder.token);
  return former;
}

bool service::release_if_held_by(const std::string& token) {
  std::lock_guard lock(lock_mutex_);
  forced_out_.erase(token);
  if (!lock_ || lock_->holder.token != token) return false;
  lock_.reset();
  return true;
}

std::optional<lock_holder> service::holder() const {
  std::lock_guard lock(lock_mutex_);
  return lock_;
}

std::optional<error> service::lock_refusal(const std::string& token) {
  std::lock_guard lock(lock_mutex_);
  if (forced_out_.erase(token) > 0)
    return error{errc::locked_out, "your lock on " + config_.name +
                                       " was released by an administrator (force unlock)"};
  if (lock_ && lock_->holder.token != token)
    return error{errc::locked, config_.name + " is locked by " + describe_holder(*lock_)};
  return std::nullopt;
}

}  // namespace labhost::service
