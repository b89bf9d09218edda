#include "plugin_library.h"

#include <dlfcn.h>

#include <boost/dll/shared_library.hpp>
#include <cstddef>
#include <fstream>
#include <map>
#include <mutex>
#include <new>

#include "labhost/value_codec.h"

namespace labhost::plugin {

struct plugin_library::opened {
  boost::dll::shared_library library;
};

namespace {

// The end of the last field a 1.0 descriptor must carry (create, destroy, invoke).
constexpr std::size_t required_descriptor_size =
    offsetof(labhost_driver_descriptor, invoke) + sizeof(labhost_driver_descriptor::invoke);

/// True when a descriptor of `struct_size` bytes holds the field that ends at `field_end`.
constexpr bool holds(std::uint32_t struct_size, std::size_t field_end) { return struct_size >= field_end; }
#define LABHOST_FIELD_END(field) (offsetof(labhost_driver_descriptor, field) + sizeof(labhost_driver_descriptor::field))

std::string abi_text(std::uint32_t abi) {
  return std::to_string(abi >> 16) + "." + std::to_string(abi & 0xFFFF);
}

/// Appends whatever the driver writes to a vector, refusing beyond a limit (messages).
struct vector_output {
  std::vector<std::uint8_t>* out;
  std::size_t limit;
  labhost_output sink{this, &write, nullptr};

  static int write(void* context, const std::uint8_t* data, std::size_t size) {
    auto* self = static_cast<vector_output*>(context);
    if (self->out->size() + size > self->limit) return 1;
    self->out->insert(self->out->end(), data, data + size);
    return 0;
  }
};

/// Appends a call's result to a frame, refusing beyond a limit; lends the driver room to
/// write a large result in place (reserve).
struct frame_output {
  protocol::frame_buffer* out;
  std::size_t limit;
  std::size_t message_start;  // on failure the message is what was written from here on
  labhost_output sink{this, &write, &reserve};

  // Called by the driver through the C ABI: nothing may be thrown back into it, so running
  // out of memory is a refusal like going over the limit.
  static int write(void* context, const std::uint8_t* data, std::size_t size) noexcept {
    auto* self = static_cast<frame_output*>(context);
    if (size > self->limit - std::min(self->limit, self->out->size())) return 1;
    try {
      self->out->append(data, size);
    } catch (const std::bad_alloc&) {
      return 1;
    }
    return 0;
  }
  static std::uint8_t* reserve(void* context, std::size_t size) noexcept {
    auto* self = static_cast<frame_output*>(context);
    // A failure after a reserve has left the start of a result behind (an array's prefix,
    // the reserved bytes): the message is what comes after them (driver_abi.h).
    std::uint8_t* at = nullptr;
    if (size <= self->limit - std::min(self->limit, self->out->size())) {
      try {
        at = self->out->append_uninitialized(size);
      } catch (const std::bad_alloc&) {
        // refused: at stays null
      }
    }
    self->message_start = self->out->size();
    return at;
  }
};

/// A driver's message as text that will encode: invalid UTF-8 would make the whole error
/// frame undecodable for the client, so such bytes become '?'.
std::string text_of(std::span<const std::uint8_t> bytes) {
  std::string text(bytes.begin(), bytes.end());
  if (!codec_detail::valid_utf8(bytes.data(), bytes.size()))
    for (char& c : text)
      if (static_cast<unsigned char>(c) >= 0x80) c = '?';
  return text;
}

errc status_to_errc(int status) {
  switch (status) {
    case LABHOST_BAD_ARGUMENTS: return errc::bad_arguments;
    case LABHOST_UNAVAILABLE: return errc::service_unavailable;
    default: return errc::driver_error;
  }
}

bool looks_like_elf(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' &&
         magic[3] == 'F';
}

std::string safe(const char* s) { return s ? s : ""; }

}  // namespace

std::string_view load_failure_name(load_failure failure) noexcept {
  switch (failure) {
    case load_failure::not_found: return "not_found";
    case load_failure::not_a_library: return "not_a_library";
    case load_failure::no_entry_symbol: return "no_entry_symbol";
    case load_failure::bad_descriptor: return "bad_descriptor";
    case load_failure::incompatible_abi: return "incompatible_abi";
    case load_failure::newer_abi_minor: return "newer_abi_minor";
  }
  return "unknown";
}

plugin_library::plugin_library(std::shared_ptr<opened> library,
                               const labhost_driver_descriptor* descriptor, plugin_info info)
    : library_(std::move(library)), descriptor_(descriptor), info_(std::move(info)) {
  has_close_ = holds(descriptor_->struct_size, LABHOST_FIELD_END(close));
  has_health_ = holds(descriptor_->struct_size, LABHOST_FIELD_END(health));
  has_events_ = holds(descriptor_->struct_size, LABHOST_FIELD_END(attach_events)) &&
                descriptor_->attach_events != nullptr && !info_.topics.empty();
}

result<std::shared_ptr<const plugin_library>, load_error> plugin_library::load(const std::filesystem::path& file) {
  // Plugins are never unloaded, so one registry for the whole process keeps them all; it is
  // leaked on purpose so no destructor unloads a library at exit while a driver still runs.
  static auto* registry = new std::map<std::filesystem::path, std::shared_ptr<const plugin_library>>;
  static std::mutex registry_mutex;  // guards registry
  const std::string shown = file.filename().string();

  std::error_code fs_error;
  if (!std::filesystem::is_regular_file(file, fs_error))
    return load_error{load_failure::not_found, shown + ": no such file"};
  auto canonical = std::filesystem::weakly_canonical(file, fs_error);

  std::lock_guard lock(registry_mutex);
  if (auto it = registry->find(canonical); it != registry->end()) return it->second;

  if (!looks_like_elf(file))
    return load_error{load_failure::not_a_library, shown + ": not a shared library (no ELF header)"};

  auto opened_library = std::make_shared<opened>();
  boost::system::error_code ec;
  opened_library->library.load(boost::dll::fs::path(file.string()),
                               boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local,
                               ec);
  if (ec) {
    const char* reason = ::dlerror();  // Boost.DLL keeps only a generic code; dlerror says why
    return load_error{load_failure::not_a_library,
                      shown + ": cannot be loaded: " + (reason ? reason : ec.message())};
  }
  if (!opened_library->library.has(LABHOST_ENTRY_SYMBOL))
    return load_error{load_failure::no_entry_symbol,
                      shown + ": does not export " LABHOST_ENTRY_SYMBOL " (not a labhost driver)"};

  // The entry symbol is a pointer variable (BOOST_DLL_ALIAS) holding the entry function.
  const void* entry_address = opened_library->library.get<const void*>(LABHOST_ENTRY_SYMBOL);
  auto entry = reinterpret_cast<labhost_entry_fn>(reinterpret_cast<std::intptr_t>(entry_address));
  const labhost_driver_descriptor* d = entry ? entry() : nullptr;
  if (d == nullptr)
    return load_error{load_failure::bad_descriptor, shown + ": entry returned no descriptor"};
  // Check the version fields first: they are the only ones every ABI generation shares.
  if ((d->abi_version >> 16) != LABHOST_ABI_VERSION_MAJOR)
    return load_error{load_failure::incompatible_abi, shown + ": ABI " + abi_text(d->abi_version) +
                                                          ", this host speaks " +
                                                          abi_text(LABHOST_ABI_VERSION)};
  if ((d->abi_version & 0xFFFF) > LABHOST_ABI_VERSION_MINOR)
    return load_error{load_failure::newer_abi_minor, shown + ": ABI " + abi_text(d->abi_version) +
                                                         " is newer than this host's " +
                                                         abi_text(LABHOST_ABI_VERSION)};
  if (d->struct_size < required_descriptor_size || !d->create || !d->destroy || !d->invoke ||
      (d->method_count > 0 && !d->methods))
    return load_error{load_failure::bad_descriptor,
                      shown + ": descriptor is too small or lacks create/destroy/invoke"};

  plugin_info info;
  info.file = file;
  info.name = safe(d->name);
  info.version = safe(d->version);
  info.vendor = safe(d->vendor);
  info.description = safe(d->description);
  info.abi_version = d->abi_version;
  // Since 1.2: method flags and topics; a shorter (older) descriptor has neither.
  const bool has_1_2_fields = holds(d->struct_size, LABHOST_FIELD_END(attach_events));
  const std::uint32_t* flags = has_1_2_fields ? d->method_flags : nullptr;
  if (has_1_2_fields && d->topic_count > 0) {
    if (d->topics == nullptr)
      return load_error{load_failure::bad_descriptor, shown + ": descriptor counts topics but lists none"};
    for (std::uint32_t t = 0; t < d->topic_count; ++t)
      info.topics.push_back({safe(d->topics[t].name), safe(d->topics[t].type), safe(d->topics[t].doc)});
  }
  for (std::uint32_t m = 0; m < d->method_count; ++m) {
    const labhost_method_info& mi = d->methods[m];
    method_description md{safe(mi.name), {}, safe(mi.returns), safe(mi.doc)};
    md.oneway = flags != nullptr && (flags[m] & LABHOST_METHOD_ONEWAY) != 0;
    if (mi.param_count > 0 && mi.params == nullptr)
      return load_error{load_failure::bad_descriptor,
                        shown + ": method " + md.name + " lists parameters without names"};
    for (std::uint32_t p = 0; p < mi.param_count; ++p)
      md.params.push_back({safe(mi.params[p].name), safe(mi.params[p].type)});
    info.methods.push_back(std::move(md));
  }

  auto library = std::make_shared<const plugin_library>(std::move(opened_library), d, std::move(info));
  registry->emplace(canonical, library);
  return library;
}

int plugin_library::method_index(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < info_.methods.size(); ++i)
    if (info_.methods[i].name == name) return static_cast<int>(i);
  return -1;
}

result<std::unique_ptr<driver_instance>> plugin_library::create(const value& params,
                                                                std::size_t max_event_bytes) const {
  std::vector<std::uint8_t> encoded = encode(params);
  std::vector<std::uint8_t> message;
  vector_output output{&message, 64 * 1024};
  void* handle = nullptr;
  int status = descriptor_->create(encoded.data(), encoded.size(), &handle, &output.sink);
  if (status != LABHOST_OK || handle == nullptr) {
    std::string text = message.empty() ? "create failed" : text_of(message);
    return error{status_to_errc(status), info_.name + ": " + text};
  }
  auto instance = std::make_unique<driver_instance>(shared_from_this(), handle);
  if (has_events_) {
    // Before any call: the driver may start publishing from here on.
    instance->events_ = std::make_shared<event_hub>(info_.topics, max_event_bytes);
    descriptor_->attach_events(handle, instance->events_->abi());
  }
  return instance;
}

driver_instance::driver_instance(std::shared_ptr<const plugin_library> library,
                                 void* handle) noexcept
    : library_(std::move(library)), handle_(handle) {}

driver_instance::~driver_instance() {
  close();
  library_->descriptor_->destroy(handle_);
  if (events_) events_->close();  // a driver without close() may publish until destroy
}

std::optional<error> driver_instance::invoke(std::uint32_t method_index,
                                             std::span<const std::uint8_t> encoded_args,
                                             protocol::frame_buffer& out, std::size_t max_result) {
  if (closed_) return error{errc::service_unavailable, "driver is closed"};
  const std::size_t start = out.size();
  frame_output output{&out, start + max_result, start};
  // A driver built for ABI 1.0 knows a two-field labhost_output: it never reads reserve.
  int status = library_->descriptor_->invoke(handle_, method_index, encoded_args.data(),
                                             encoded_args.size(), &output.sink);
  if (status == LABHOST_OK) {
    if (out.size() == start) {
      const auto null_tag = static_cast<std::uint8_t>(value_kind::null);
      out.append(&null_tag, 1);
    }
    return std::nullopt;
  }
  // An error's message is small and written with write(): it is in the head.
  auto whole = out.contiguous();
  std::string message = text_of(std::span(whole).subspan(output.message_start));
  out.truncate(start);
  if (message.empty()) message = "driver reported an error without a message";
  return error{status_to_errc(status), std::move(message)};
}

std::optional<error> driver_instance::close() {
  if (closed_) return std::nullopt;
  closed_ = true;
  if (!library_->has_close_ || library_->descriptor_->close == nullptr) return std::nullopt;
  std::vector<std::uint8_t> message;
  vector_output output{&message, 64 * 1024};
  int status = library_->descriptor_->close(handle_, &output.sink);
  if (events_) events_->close();  // its threads have stopped publishing (driver_abi.h)
  if (status == LABHOST_OK) return std::nullopt;
  return error{status_to_errc(status), text_of(message)};
}

std::optional<error> driver_instance::health() {
  if (!library_->has_health_ || library_->descriptor_->health == nullptr) return std::nullopt;
  std::vector<std::uint8_t> message;
  vector_output output{&message, 64 * 1024};
  int status = library_->descriptor_->health(handle_, &output.sink);
  if (status == LABHOST_OK) return std::nullopt;
  return error{status_to_errc(status), text_of(message)};
}

}  // namespace labhost::plugin
