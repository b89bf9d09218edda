// labhost/driver.h: the header-only C++ driver SDK.
//
// A driver is an ordinary class constructed from its host.json parameters, plus a method
// table. The SDK builds the C descriptor of driver_abi.h from them, converts wire values to
// the methods' C++ parameter types (a typed bad_arguments error naming the parameter when a
// value does not fit), converts results back, and turns every exception into a status code
// and message, so nothing C++ crosses the plugin boundary.
//
//   class my_laser {
//    public:
//     explicit my_laser(const labhost::params& p) : nm_(p.get("wavelength_nm", 1550.0)) {}
//     double wavelength() const { return nm_; }
//     void set_wavelength(double nm) { nm_ = nm; }
//    private:
//     double nm_;
//   };
//   LABHOST_DRIVER(my_laser, "my_laser", "1.0.0", "ACME", "A laser",
//       labhost::method(&my_laser::wavelength, "wavelength", {}, "Wavelength in nm."),
//       labhost::method(&my_laser::set_wavelength, "set_wavelength", {"nm"}, "Tune."))
//
// A large typed-array result (a camera frame, a long waveform) is best returned as a
// labhost::array_result<T>: the element count and a function that writes the elements, which
// the SDK calls with memory inside the daemon's reply, so the data is written once, in place.
//
// Throw labhost::driver_error (or any std::exception) for a failed operation,
// labhost::unavailable_error when the instrument cannot be reached. Optional members
// `void close()` and `void health()` (throws when unhealthy) are used when present.
// The daemon never calls one instance from two threads at once.
//
// Events: list topics in the table (labhost::topic<T>("name", "doc")) and give the class a
// member `void set_publisher(labhost::publisher p)`; the SDK calls it right after the
// constructor, and the driver may then publish from any of its threads until close() returns
// (stop them there). A method that needs no reply is marked labhost::oneway(labhost::method(...)).
#ifndef LABHOST_DRIVER_H
#define LABHOST_DRIVER_H

#include <boost/dll/alias.hpp>
#include <complex>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "labhost/driver_abi.h"
#include "labhost/value.h"
#include "labhost/value_codec.h"

namespace labhost {

/// A failed operation on the instrument; becomes the wire error driver_error.
struct driver_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// Arguments that do not fit the method; becomes the wire error bad_arguments.
struct bad_arguments_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// The instrument cannot be reached (yet); becomes service_unavailable.
struct unavailable_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------
// Conversions between wire values and C++ types.

template <typename T, typename = void>
struct value_traits;  // specialised below; an unsupported type fails to compile here

namespace sdk_detail {
[[noreturn]] inline void type_mismatch(std::string_view param, std::string_view expected,
                                       const value& got) {
  throw bad_arguments_error("parameter '" + std::string(param) + "': expected " +
                            std::string(expected) + ", got " + std::string(kind_name(got.kind())));
}
}  // namespace sdk_detail

template <>
struct value_traits<bool> {
  static std::string type_name() { return "bool"; }
  static bool from(const value& v, std::string_view param) {
    if (!v.is_bool()) sdk_detail::type_mismatch(param, "bool", v);
    return v.as_bool();
  }
  static value to(bool b) { return b; }
};

template <typename F>
struct value_traits<F, std::enable_if_t<std::is_floating_point_v<F>>> {
  static std::string type_name() { return "float64"; }
  static F from(const value& v, std::string_view param) {
    if (!v.is_number()) sdk_detail::type_mismatch(param, "float64", v);
    return static_cast<F>(v.as_number());
  }
  static value to(F f) { return static_cast<double>(f); }
};

template <typename I>
struct value_traits<I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>>> {
  static std::string type_name() { return "int64"; }
  static I from(const value& v, std::string_view param) {
    if (!v.is_int()) sdk_detail::type_mismatch(param, "int64", v);
    std::int64_t i = v.as_int();
    bool fits;
    if constexpr (std::is_signed_v<I>)
      fits = i >= std::numeric_limits<I>::min() && i <= std::numeric_limits<I>::max();
    else
      fits = i >= 0 && static_cast<std::uint64_t>(i) <= std::numeric_limits<I>::max();
    if (!fits)
      throw bad_arguments_error("parameter '" + std::string(param) + "': " + std::to_string(i) +
                                " is out of range");
    return static_cast<I>(i);
  }
  static value to(I i) { return static_cast<std::int64_t>(i); }
};

template <>
struct value_traits<std::string> {
  static std::string type_name() { return "string"; }
  static std::string from(const value& v, std::string_view param) {
    if (!v.is_string()) sdk_detail::type_mismatch(param, "string", v);
    return v.as_string();
  }
  static value to(std::string s) { return value(std::move(s)); }
};

template <>
struct value_traits<bytes> {
  static std::string type_name() { return "bytes"; }
  static bytes from(const value& v, std::string_view param) {
    if (!v.is_bytes()) sdk_detail::type_mismatch(param, "bytes", v);
    return v.as_bytes();
  }
  static value to(bytes b) { return value(std::move(b)); }
};

template <>
struct value_traits<value> {
  static std::string type_name() { return "any"; }
  static value from(const value& v, std::string_view) { return v; }
  static value to(value v) { return v; }
};

template <>
struct value_traits<list> {
  static std::string type_name() { return "list"; }
  static list from(const value& v, std::string_view param) {
    if (!v.is_list()) sdk_detail::type_mismatch(param, "list", v);
    return v.as_list();
  }
  static value to(list l) { return value(std::move(l)); }
};

template <>
struct value_traits<map> {
  static std::string type_name() { return "map"; }
  static map from(const value& v, std::string_view param) {
    if (!v.is_map()) sdk_detail::type_mismatch(param, "map", v);
    return v.as_map();
  }
  static value to(map m) { return value(std::move(m)); }
};

template <>
struct value_traits<typed_array> {
  static std::string type_name() { return "array"; }
  static typed_array from(const value& v, std::string_view param) {
    if (!v.is_array()) sdk_detail::type_mismatch(param, "array", v);
    return v.as_array();
  }
  static value to(typed_array a) { return value(std::move(a)); }
};

namespace sdk_detail {
/// Element types a std::vector<T> parameter or result travels as (std::vector<bool> is a list).
template <typename T>
constexpr bool is_vector_element_v = is_array_element_v<T> && !std::is_same_v<T, bool>;
}  // namespace sdk_detail

/// std::complex numbers: from a complex typed array's element, or from a plain number.
template <typename F>
struct value_traits<std::complex<F>, std::enable_if_t<std::is_floating_point_v<F>>> {
  static std::string type_name() { return sizeof(F) == 4 ? "complex64" : "complex128"; }
  static std::complex<F> from(const value& v, std::string_view param) {
    if (v.is_number()) return {static_cast<F>(v.as_number()), F(0)};
    if (v.is_array() && v.as_array().count() == 1) {
      const auto& a = v.as_array();
      if (a.type == element_type::complex64) return std::complex<F>(a.at<std::complex<float>>(0));
      if (a.type == element_type::complex128) return std::complex<F>(a.at<std::complex<double>>(0));
    }
    sdk_detail::type_mismatch(param, type_name() + " (a number, or a one-element complex array)", v);
  }
  static value to(std::complex<F> c) { return typed_array::from(&c, 1); }
};

/// std::vector of numbers travels as a typed array; a list of numbers is accepted too. A
/// shaped array is taken flat, in row-major order (take a typed_array for its shape).
template <typename T>
struct value_traits<std::vector<T>, std::enable_if_t<sdk_detail::is_vector_element_v<T>>> {
  static std::string type_name() {
    return "array<" + std::string(element_type_name(element_type_of<T>())) + ">";
  }
  static std::vector<T> from(const value& v, std::string_view param) {
    std::vector<T> out;
    if (v.is_array()) {
      const auto& a = v.as_array();
      if (a.type != element_type_of<T>())
        throw bad_arguments_error("parameter '" + std::string(param) + "': expected " +
                                  type_name() + ", got array<" +
                                  std::string(element_type_name(a.type)) + ">");
      out.resize(a.count());
      if (!out.empty()) std::memcpy(out.data(), a.data.data(), a.data.size());
    } else if (v.is_list()) {
      out.reserve(v.as_list().size());
      for (const auto& element : v.as_list())
        out.push_back(value_traits<T>::from(element, param));
    } else {
      sdk_detail::type_mismatch(param, type_name(), v);
    }
    return out;
  }
  static value to(const std::vector<T>& values) { return typed_array::from(values); }
};

/// Any other std::vector travels as a list.
template <typename T>
struct value_traits<std::vector<T>, std::enable_if_t<!sdk_detail::is_vector_element_v<T>>> {
  static std::string type_name() { return "list<" + value_traits<T>::type_name() + ">"; }
  static std::vector<T> from(const value& v, std::string_view param) {
    if (!v.is_list()) sdk_detail::type_mismatch(param, type_name(), v);
    std::vector<T> out;
    out.reserve(v.as_list().size());
    for (const auto& element : v.as_list()) out.push_back(value_traits<T>::from(element, param));
    return out;
  }
  static value to(const std::vector<T>& values) {
    list l;
    l.reserve(values.size());
    for (const auto& element : values) l.push_back(value_traits<T>::to(element));
    return l;
  }
};

template <typename T>
struct value_traits<std::optional<T>> {
  static std::string type_name() { return "optional<" + value_traits<T>::type_name() + ">"; }
  static std::optional<T> from(const value& v, std::string_view param) {
    if (v.is_null()) return std::nullopt;
    return value_traits<T>::from(v, param);
  }
  static value to(const std::optional<T>& o) {
    return o ? value_traits<T>::to(*o) : value(nullptr);
  }
};

template <typename T>
using plain_t = std::remove_cvref_t<T>;

// ---------------------------------------------------------------------------------------
// Driver parameters (the "params" object of a service in host.json).

class params {
 public:
  params() = default;
  explicit params(value v) : value_(std::move(v)) {}

  bool has(std::string_view name) const { return value_.find(name) != nullptr; }

  /// The parameter converted to T, or `fallback` when absent. A present parameter of the
  /// wrong type throws bad_arguments_error naming it.
  template <typename T>
  T get(std::string_view name, T fallback) const {
    const value* v = value_.find(name);
    if (v == nullptr) return fallback;
    return value_traits<T>::from(*v, name);
  }
  std::string get(std::string_view name, const char* fallback) const {
    return get<std::string>(name, std::string(fallback));
  }

  /// The parameter converted to T; throws bad_arguments_error when absent.
  template <typename T>
  T require(std::string_view name) const {
    const value* v = value_.find(name);
    if (v == nullptr)
      throw bad_arguments_error("missing parameter '" + std::string(name) + "'");
    return value_traits<T>::from(*v, name);
  }

  const value& all() const { return value_; }

 private:
  value value_ = labhost::map{};
};

// ---------------------------------------------------------------------------------------
// Method table.

/// A typed-array result that the driver writes in place: `count` elements of T, written by
/// `fill` into the span it is given (uninitialized memory; every element must be written),
/// and optionally its `shape` (outermost first, row-major; the product must be `count`).
/// `fill` runs after the method returns, before the reply leaves; an exception from it fails
/// the call like one from the method.
///
///   labhost::array_result<std::uint16_t> grab() {
///     return labhost::shaped_result<std::uint16_t>({height_, width_},
///                                                  [this](std::span<std::uint16_t> pixels) { read_out(pixels); });
///   }
template <typename T>
struct array_result {
  static_assert(is_array_element_v<T>, "array_result holds typed-array elements (is_array_element_v)");
  array_result() = default;
  array_result(std::size_t n, std::function<void(std::span<T>)> f, std::vector<std::uint32_t> dims = {})
      : count(n), fill(std::move(f)), shape(std::move(dims)) {}

  std::size_t count = 0;
  std::function<void(std::span<T>)> fill;
  std::vector<std::uint32_t> shape;  // empty: flat
};

/// An array_result of the given shape (one dimension: flat).
template <typename T>
array_result<T> shaped_result(std::vector<std::uint32_t> shape, std::function<void(std::span<T>)> fill) {
  std::size_t count = 1;
  for (auto d : shape) count *= d;
  if (shape.size() <= 1) shape.clear();
  return {count, std::move(fill), std::move(shape)};
}

/// What a method gave back: a value, or an array to be written in place.
struct method_result {
  value result;
  element_type type = element_type::uint8;  // with fill: the array's element type,
  std::size_t count = 0;                    // its element count,
  std::vector<std::uint32_t> shape;         // its shape (empty: flat),
  std::function<void(std::uint8_t*)> fill;  // and what writes it (count elements at the pointer)
};

template <typename Driver>
struct method_binding {
  const char* name;
  const char* doc;
  std::vector<const char*> param_names;
  std::vector<std::string> param_types;
  std::string return_type;
  std::function<method_result(Driver&, const list&)> invoke;
  std::uint32_t flags = 0;  // LABHOST_METHOD_* bits
};

/// A row of the table naming a topic the driver publishes on.
struct topic_binding {
  const char* name;
  std::string type;
  const char* doc;
};

namespace sdk_detail {
template <typename T>
struct is_array_result : std::false_type {};
template <typename T>
struct is_array_result<array_result<T>> : std::true_type {
  using element = T;
};

/// A method's return value as a method_result.
template <typename R>
method_result to_method_result(R&& r) {
  using plain = plain_t<R>;
  method_result m;
  if constexpr (is_array_result<plain>::value) {
    using element = typename is_array_result<plain>::element;
    m.type = element_type_of<element>();
    m.count = r.count;
    m.shape = std::move(r.shape);
    if (m.shape.size() > max_array_dimensions) throw driver_error("array_result: more than 32 dimensions");
    if (!m.shape.empty()) {
      std::size_t product = 1;
      for (auto d : m.shape) product *= d;
      if (product != m.count) throw driver_error("array_result: the shape does not hold `count` elements");
    }
    m.fill = [fill = std::move(r.fill), count = r.count](std::uint8_t* at) {
      // The host's memory is 16-byte aligned, so it holds T directly.
      if (fill) fill(std::span<element>(reinterpret_cast<element*>(at), count));
    };
  } else {
    m.result = value_traits<plain>::to(std::forward<R>(r));
  }
  return m;
}
}  // namespace sdk_detail

namespace sdk_detail {
template <typename Driver, typename R, typename... A, typename Fn, std::size_t... I>
method_binding<Driver> make_binding(Fn fn, const char* name, std::vector<const char*> names,
                                    const char* doc, std::index_sequence<I...>) {
  method_binding<Driver> b;
  b.name = name;
  b.doc = doc;
  b.param_types = {value_traits<plain_t<A>>::type_name()...};
  // A table with fewer names than parameters still works: the rest are named argN.
  b.param_names = std::move(names);
  b.param_names.resize(sizeof...(A), nullptr);
  if constexpr (std::is_void_v<R>)
    b.return_type = "null";
  else if constexpr (is_array_result<plain_t<R>>::value)
    b.return_type = value_traits<std::vector<typename is_array_result<plain_t<R>>::element>>::type_name();
  else
    b.return_type = value_traits<plain_t<R>>::type_name();
  auto names_copy = b.param_names;
  b.invoke = [fn, names_copy](Driver& d, const list& args) -> method_result {
    if (args.size() != sizeof...(A))
      throw bad_arguments_error("expected " + std::to_string(sizeof...(A)) + " argument(s), got " +
                                std::to_string(args.size()));
    auto param = [&](std::size_t i) -> std::string {
      return names_copy[i] ? names_copy[i] : "arg" + std::to_string(i);
    };
    if constexpr (std::is_void_v<R>) {
      std::invoke(fn, d, value_traits<plain_t<A>>::from(args[I], param(I))...);
      return method_result{};
    } else {
      return to_method_result(std::invoke(fn, d, value_traits<plain_t<A>>::from(args[I], param(I))...));
    }
  };
  return b;
}
}  // namespace sdk_detail

/// A topic whose values are of type T (as for a method result: double, std::vector<uint16_t>
/// for an array, labhost::value for anything).
template <typename T = value>
topic_binding topic(const char* name, const char* doc) {
  return {name, value_traits<T>::type_name(), doc};
}

/// Marks a method oneway: clients send the call and go on; a failure is still reported.
template <typename Driver>
method_binding<Driver> oneway(method_binding<Driver> m) {
  m.flags |= LABHOST_METHOD_ONEWAY;
  return m;
}

/// One row of a method table: member function, wire name, parameter names, doc string.
template <typename Driver, typename R, typename... A>
method_binding<Driver> method(R (Driver::*fn)(A...), const char* name,
                              std::initializer_list<const char*> param_names, const char* doc) {
  return sdk_detail::make_binding<Driver, R, A...>(fn, name, param_names, doc,
                                                   std::index_sequence_for<A...>{});
}
template <typename Driver, typename R, typename... A>
method_binding<Driver> method(R (Driver::*fn)(A...) const, const char* name,
                              std::initializer_list<const char*> param_names, const char* doc) {
  return sdk_detail::make_binding<Driver, R, A...>(fn, name, param_names, doc,
                                                   std::index_sequence_for<A...>{});
}

// ---------------------------------------------------------------------------------------
// The descriptor built from a driver class and its method table.

namespace sdk_detail {

inline void write_text(labhost_output* out, std::string_view text) {
  if (out != nullptr && out->write != nullptr)
    out->write(out->context, reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

/// Runs `body`, mapping exceptions to status codes; the message goes to `out`.
template <typename Body>
int guarded(labhost_output* out, Body&& body) noexcept {
  try {
    return body();
  } catch (const bad_arguments_error& e) {
    write_text(out, e.what());
    return LABHOST_BAD_ARGUMENTS;
  } catch (const unavailable_error& e) {
    write_text(out, e.what());
    return LABHOST_UNAVAILABLE;
  } catch (const std::exception& e) {
    write_text(out, e.what());
    return LABHOST_DRIVER_ERROR;
  } catch (...) {
    write_text(out, "unknown exception");
    return LABHOST_DRIVER_ERROR;
  }
}

}  // namespace sdk_detail

/// What a driver publishes its topics' values through (ABI 1.2). Cheap to copy; every
/// member is thread-safe. A default-constructed one publishes nothing.
class publisher {
 public:
  publisher() = default;
  publisher(const labhost_events* events, const std::vector<std::string>* topics) noexcept
      : events_(events), topics_(topics) {}

  /// Subscribers of a topic now, and how many of them could take another value without
  /// dropping one: produce costly values (a frame) only while `ready` is not 0.
  struct demand_info {
    std::uint32_t subscribers = 0;
    std::uint32_t ready = 0;
  };
  demand_info demand(std::string_view topic) const noexcept {
    demand_info d;
    const int i = index(topic);
    if (i >= 0) events_->demand(events_->context, static_cast<std::uint32_t>(i), &d.subscribers, &d.ready);
    return d;
  }

  /// Publishes `v` on `topic` (encoded and copied). False when the daemon refused it (no such
  /// topic, too large, the instance closed) or this publisher is not attached.
  bool publish(std::string_view topic, const value& v) const {
    const int i = index(topic);
    if (i < 0) return false;
    std::vector<std::uint8_t> encoded;
    if (v.is_array()) {  // an array's bytes go as they are, after their prefix
      const auto& a = v.as_array();
      std::uint8_t prefix[array_prefix_size(max_array_dimensions)];
      encoded.assign(prefix, prefix + write_array_prefix(prefix, a.type, a.count(), a.shape));
      encoded.insert(encoded.end(), a.data.begin(), a.data.end());
    } else {
      encode(v, encoded);
    }
    return events_->publish(events_->context, static_cast<std::uint32_t>(i), encoded.data(), encoded.size()) == 0;
  }

  /// Publishes an array of `shape` (one dimension: flat) on `topic`, written in place by
  /// `fill` straight into the daemon's memory: a camera frame is written once. An exception
  /// from `fill` drops the value and propagates. False when refused.
  template <typename T>
  bool publish_array(std::string_view topic, std::vector<std::uint32_t> shape,
                     const std::function<void(std::span<T>)>& fill) const {
    static_assert(is_array_element_v<T>, "publish_array publishes typed-array elements");
    const int i = index(topic);
    if (i < 0 || shape.empty() || shape.size() > max_array_dimensions) return false;
    std::size_t count = 1;
    for (auto d : shape) count *= d;
    if (shape.size() == 1) {
      if (count > std::numeric_limits<std::uint32_t>::max()) return false;
      shape.clear();
    }
    const std::size_t prefix = array_prefix_size(shape.size());
    void* handle = nullptr;
    // The elements, after the prefix, start 16-byte aligned (aligned_at).
    std::uint8_t* at = events_->reserve(events_->context, static_cast<std::uint32_t>(i), prefix + count * sizeof(T),
                                        prefix, &handle);
    if (at == nullptr) return false;
    write_array_prefix(at, element_type_of<T>(), count, shape);
    try {
      if (fill) fill(std::span<T>(reinterpret_cast<T*>(at + prefix), count));
    } catch (...) {
      events_->commit(events_->context, handle, 0);
      throw;
    }
    return events_->commit(events_->context, handle, 1) == 0;
  }

  bool attached() const noexcept { return events_ != nullptr; }

 private:
  int index(std::string_view topic) const noexcept {
    if (events_ == nullptr || topics_ == nullptr) return -1;
    for (std::size_t i = 0; i < topics_->size(); ++i)
      if ((*topics_)[i] == topic) return static_cast<int>(i);
    return -1;
  }

  const labhost_events* events_ = nullptr;
  const std::vector<std::string>* topics_ = nullptr;
};

/// One row of LABHOST_DRIVER's table: a method or a topic.
template <typename Driver>
struct table_entry {
  table_entry(method_binding<Driver> m) : method(std::move(m)) {}  // NOLINT: implicit on purpose
  table_entry(topic_binding t) : topic(std::move(t)) {}            // NOLINT
  std::optional<method_binding<Driver>> method;
  std::optional<topic_binding> topic;
};

template <typename Driver>
class driver_definition {
 public:
  driver_definition(const char* name, const char* version, const char* vendor,
                    const char* description, std::initializer_list<table_entry<Driver>> table) {
    for (const auto& entry : table) {
      if (entry.method) bindings_.push_back(*entry.method);
      if (entry.topic) topic_bindings_.push_back(*entry.topic);
    }
    for (const auto& t : topic_bindings_) {
      topic_names_.emplace_back(t.name);
      topic_infos_.push_back({t.name, t.type.c_str(), t.doc});
    }
    param_infos_.resize(bindings_.size());
    for (std::size_t m = 0; m < bindings_.size(); ++m) {
      auto& b = bindings_[m];
      for (std::size_t p = 0; p < b.param_names.size(); ++p) {
        if (b.param_names[p] == nullptr) {
          generated_names_.push_back(std::make_unique<std::string>("arg" + std::to_string(p)));
          b.param_names[p] = generated_names_.back()->c_str();
        }
        param_infos_[m].push_back({b.param_names[p], b.param_types[p].c_str()});
      }
    }
    for (std::size_t m = 0; m < bindings_.size(); ++m) {
      auto& b = bindings_[m];
      method_infos_.push_back({b.name, param_infos_[m].data(),
                               static_cast<std::uint32_t>(param_infos_[m].size()),
                               b.return_type.c_str(), b.doc});
      method_flags_.push_back(b.flags);
    }
    descriptor_.struct_size = sizeof(labhost_driver_descriptor);
    descriptor_.abi_version = LABHOST_ABI_VERSION;
    descriptor_.name = name;
    descriptor_.version = version;
    descriptor_.vendor = vendor;
    descriptor_.description = description;
    descriptor_.methods = method_infos_.data();
    descriptor_.method_count = static_cast<std::uint32_t>(method_infos_.size());
    descriptor_.create = &create;
    descriptor_.destroy = &destroy;
    descriptor_.invoke = &invoke;
    if constexpr (requires(Driver& d) { d.close(); }) descriptor_.close = &close;
    if constexpr (requires(Driver& d) { d.health(); }) descriptor_.health = &health;
    descriptor_.method_flags = method_flags_.data();
    descriptor_.topics = topic_infos_.empty() ? nullptr : topic_infos_.data();
    descriptor_.topic_count = static_cast<std::uint32_t>(topic_infos_.size());
    if constexpr (requires(Driver& d, publisher p) { d.set_publisher(p); }) descriptor_.attach_events = &attach_events;
    instance_ = this;
  }
  driver_definition(const driver_definition&) = delete;
  driver_definition& operator=(const driver_definition&) = delete;

  const labhost_driver_descriptor* descriptor() const noexcept { return &descriptor_; }

 private:
  static int create(const std::uint8_t* data, std::size_t size, void** instance,
                    labhost_output* error) {
    return sdk_detail::guarded(error, [&] {
      auto decoded = labhost::decode({data, size});
      if (!decoded.ok()) throw bad_arguments_error("parameters: " + decoded.message());
      *instance = new Driver(params(std::move(decoded.decoded)));
      return LABHOST_OK;
    });
  }
  static void destroy(void* instance) { delete static_cast<Driver*>(instance); }
  static void attach_events(void* instance, const labhost_events* events) {
    if constexpr (requires(Driver& d, publisher p) { d.set_publisher(p); }) {
      try {
        static_cast<Driver*>(instance)->set_publisher(publisher(events, &instance_->topic_names_));
      } catch (...) {
        // Nothing crosses the boundary; a driver that cannot take its publisher publishes nothing.
      }
    }
  }
  static int invoke(void* instance, std::uint32_t method_index, const std::uint8_t* data,
                    std::size_t size, labhost_output* result) {
    return sdk_detail::guarded(result, [&] {
      if (method_index >= instance_->bindings_.size())
        throw bad_arguments_error("no method " + std::to_string(method_index));
      auto decoded = labhost::decode({data, size});
      if (!decoded.ok() || !decoded.decoded.is_list())
        throw bad_arguments_error("arguments are not an encoded list");
      method_result produced =
          instance_->bindings_[method_index].invoke(*static_cast<Driver*>(instance), decoded.decoded.as_list());
      auto write = [&](const std::uint8_t* chunk, std::size_t length) {
        if (result->write(result->context, chunk, length) != 0)
          throw driver_error("result refused by the host (too large?)");
      };
      auto array_prefix = [&](element_type type, std::size_t count, std::span<const std::uint32_t> shape) {
        if (shape.empty() && count > std::numeric_limits<std::uint32_t>::max())
          throw driver_error("array result too long");
        std::uint8_t prefix[array_prefix_size(max_array_dimensions)];
        write(prefix, write_array_prefix(prefix, type, count, shape));
      };
      if (produced.fill) {
        // Written in place: straight into the host's reply when it lends memory (ABI 1.1),
        // else into a buffer of ours that is then handed over.
        const std::size_t bytes = produced.count * element_size(produced.type);
        if (result->reserve != nullptr && bytes > 0) {
          // A failure after this reserve leaves its bytes behind: the host reads the message
          // from after them (driver_abi.h).
          array_prefix(produced.type, produced.count, produced.shape);
          std::uint8_t* at = result->reserve(result->context, bytes);
          if (at == nullptr) throw driver_error("result refused by the host (too large?)");
          produced.fill(at);
          return LABHOST_OK;
        }
        // Filled first, so that nothing is written unless the result is complete.
        std::unique_ptr<std::uint8_t[]> own;
        if (bytes > 0) {
          own = std::make_unique_for_overwrite<std::uint8_t[]>(bytes);
          produced.fill(own.get());
        }
        array_prefix(produced.type, produced.count, produced.shape);
        if (bytes > 0) write(own.get(), bytes);
        return LABHOST_OK;
      }
      const value& out = produced.result;
      if (out.is_array()) {
        // A waveform or a camera frame: hand over its bytes as they are, without first
        // copying them into an encoding buffer.
        const auto& a = out.as_array();
        array_prefix(a.type, a.count(), a.shape);
        if (!a.data.empty()) write(a.data.data(), a.data.size());
        return LABHOST_OK;
      }
      std::vector<std::uint8_t> encoded;
      labhost::encode(out, encoded);
      write(encoded.data(), encoded.size());
      return LABHOST_OK;
    });
  }
  static int close(void* instance, labhost_output* error) {
    return sdk_detail::guarded(error, [&] {
      if constexpr (requires(Driver& d) { d.close(); }) static_cast<Driver*>(instance)->close();
      return LABHOST_OK;
    });
  }
  static int health(void* instance, labhost_output* error) {
    return sdk_detail::guarded(error, [&] {
      if constexpr (requires(Driver& d) { d.health(); }) static_cast<Driver*>(instance)->health();
      return LABHOST_OK;
    });
  }

  std::vector<method_binding<Driver>> bindings_;
  std::vector<topic_binding> topic_bindings_;
  std::vector<std::string> topic_names_;
  std::vector<labhost_topic_info> topic_infos_;
  std::vector<std::uint32_t> method_flags_;
  std::vector<std::unique_ptr<std::string>> generated_names_;
  std::vector<std::vector<labhost_param_info>> param_infos_;
  std::vector<labhost_method_info> method_infos_;
  labhost_driver_descriptor descriptor_{};
  static inline const driver_definition* instance_ = nullptr;  // one definition per plugin
};

}  // namespace labhost

/// Defines the plugin's descriptor and exports its entry symbol (one per plugin). The
/// definition is built on first use, when the host calls the entry function.
#define LABHOST_DRIVER(DRIVER_CLASS, NAME, VERSION, VENDOR, DESCRIPTION, ...)                 \
  namespace labhost_plugin {                                                                  \
  inline const labhost_driver_descriptor* entry() {                                           \
    static const ::labhost::driver_definition<DRIVER_CLASS> definition{                       \
        NAME, VERSION, VENDOR, DESCRIPTION, {__VA_ARGS__}};                                   \
    return definition.descriptor();                                                           \
  }                                                                                           \
  }                                                                                           \
  BOOST_DLL_ALIAS(labhost_plugin::entry, labhost_driver_entry)

#endif  // LABHOST_DRIVER_H
