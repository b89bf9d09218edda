// labhost/value.h: the values that travel between clients, daemons and drivers.
//
// A value is null, bool, int64, float64, string (UTF-8), bytes, list, map (string keys, order
// kept) or a typed array (element type + count + raw little-endian data, and a shape for
// arrays of two or more dimensions). It is a
// plain regular type: copyable, movable, comparable; not synchronised (one thread at a time).
//
// This header is part of the driver SDK: it is header-only and depends on the standard
// library alone, so a plugin built with another toolchain needs nothing else.
#ifndef LABHOST_VALUE_H
#define LABHOST_VALUE_H

#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace labhost {

/// Element type of a typed array. The numbers are wire bytes (docs/protocol.md). The types
/// from complex64 on are protocol version 2: a version-1 peer cannot receive them.
enum class element_type : std::uint8_t {
  float64 = 1,
  float32 = 2,
  int64 = 3,
  int32 = 4,
  int16 = 5,
  int8 = 6,
  uint64 = 7,
  uint32 = 8,
  uint16 = 9,
  uint8 = 10,
  complex64 = 11,   // two float32: real, then imaginary (std::complex<float>, numpy complex64)
  complex128 = 12,  // two float64 (std::complex<double>, numpy complex128)
  boolean = 13,     // one byte, 0 or 1 (bool, numpy bool_)
};

/// The last element type of protocol version 1.
inline constexpr element_type last_v1_element_type = element_type::uint8;

/// Size in bytes of one element, or 0 for a byte that names no element type.
constexpr std::size_t element_size(element_type type) noexcept {
  switch (type) {
    case element_type::complex128:
      return 16;
    case element_type::float64:
    case element_type::int64:
    case element_type::uint64:
    case element_type::complex64:
      return 8;
    case element_type::float32:
    case element_type::int32:
    case element_type::uint32:
      return 4;
    case element_type::int16:
    case element_type::uint16:
      return 2;
    case element_type::int8:
    case element_type::uint8:
    case element_type::boolean:
      return 1;
  }
  return 0;
}

/// The numpy-style name of an element type ("float64", "uint16", "complex64", "bool", ...).
constexpr std::string_view element_type_name(element_type type) noexcept {
  switch (type) {
    case element_type::float64: return "float64";
    case element_type::float32: return "float32";
    case element_type::int64: return "int64";
    case element_type::int32: return "int32";
    case element_type::int16: return "int16";
    case element_type::int8: return "int8";
    case element_type::uint64: return "uint64";
    case element_type::uint32: return "uint32";
    case element_type::uint16: return "uint16";
    case element_type::uint8: return "uint8";
    case element_type::complex64: return "complex64";
    case element_type::complex128: return "complex128";
    case element_type::boolean: return "bool";
  }
  return "unknown";
}

/// True for the C++ types a typed array can hold: the fixed-size integers, float, double,
/// std::complex<float>, std::complex<double> and bool.
template <typename T>
inline constexpr bool is_array_element_v =
    std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, std::int64_t> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int16_t> || std::is_same_v<T, std::int8_t> ||
    std::is_same_v<T, std::uint64_t> || std::is_same_v<T, std::uint32_t> || std::is_same_v<T, std::uint16_t> ||
    std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::complex<float>> ||
    std::is_same_v<T, std::complex<double>> || std::is_same_v<T, bool>;

/// Maps a C++ element type to its element type (only the types of is_array_element_v).
template <typename T>
constexpr element_type element_type_of() noexcept {
  if constexpr (std::is_same_v<T, double>) return element_type::float64;
  else if constexpr (std::is_same_v<T, float>) return element_type::float32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return element_type::int64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return element_type::int32;
  else if constexpr (std::is_same_v<T, std::int16_t>) return element_type::int16;
  else if constexpr (std::is_same_v<T, std::int8_t>) return element_type::int8;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return element_type::uint64;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return element_type::uint32;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return element_type::uint16;
  else if constexpr (std::is_same_v<T, std::complex<float>>) return element_type::complex64;
  else if constexpr (std::is_same_v<T, std::complex<double>>) return element_type::complex128;
  else if constexpr (std::is_same_v<T, bool>) return element_type::boolean;
  else {
    static_assert(std::is_same_v<T, std::uint8_t>, "not a typed-array element type");
    return element_type::uint8;
  }
}

/// Most dimensions a shaped array may have (numpy's limit).
inline constexpr std::size_t max_array_dimensions = 32;

/// Raw bytes, never text. Distinct from std::string so the two never mix on the wire.
struct bytes {
  std::vector<std::uint8_t> data;
  bool operator==(const bytes&) const = default;
};

/// A typed array: `count()` elements of `type`, stored little-endian in `data`, and its
/// shape. An empty shape is one dimension of count() elements (a waveform); otherwise `shape`
/// lists 2 to max_array_dimensions dimensions, outermost first, elements in row-major (C)
/// order, and their product is count() (a camera frame: {height, width}).
struct typed_array {
  element_type type = element_type::uint8;
  std::vector<std::uint8_t> data;     // size is a multiple of element_size(type)
  std::vector<std::uint32_t> shape;   // empty, or 2..32 dimensions whose product is count()

  std::size_t count() const noexcept { return data.size() / element_size(type); }
  /// Number of dimensions: 1 for a flat array.
  std::size_t dimensions() const noexcept { return shape.empty() ? 1 : shape.size(); }

  /// Copies a contiguous range of T into a new array (little-endian hosts only, as is every
  /// platform labhost targets; the static_assert in value_codec.h keeps that honest).
  template <typename T>
  static typed_array from(const T* first, std::size_t count) {
    typed_array array;
    array.type = element_type_of<T>();
    array.data.resize(count * sizeof(T));
    if (count != 0) std::memcpy(array.data.data(), first, count * sizeof(T));
    return array;
  }
  template <typename T>
  static typed_array from(const std::vector<T>& values) {
    static_assert(!std::is_same_v<T, bool>, "std::vector<bool> has no contiguous data: use from(pointer, count)");
    return from(values.data(), values.size());
  }

  /// This array with the shape `dims` (outermost first). One dimension makes it flat. Throws
  /// std::invalid_argument when the product of `dims` is not count(), or for more than
  /// max_array_dimensions dimensions.
  typed_array reshaped(std::vector<std::uint32_t> dims) && {
    if (dims.empty() || dims.size() > max_array_dimensions)
      throw std::invalid_argument("a shape has 1 to 32 dimensions");
    std::size_t product = 1;
    for (auto d : dims) product *= d;
    if (product != count()) throw std::invalid_argument("the shape does not hold the array's elements");
    if (dims.size() == 1) dims.clear();
    shape = std::move(dims);
    return std::move(*this);
  }

  /// Element i (in row-major order) as T. REQUIRES: type == element_type_of<T>() and i < count().
  template <typename T>
  T at(std::size_t i) const noexcept {
    T element;
    std::memcpy(&element, data.data() + i * sizeof(T), sizeof(T));
    return element;
  }

  bool operator==(const typed_array&) const = default;
};

/// Kind of a value; the numbers are the wire tags (docs/protocol.md).
enum class value_kind : std::uint8_t {
  null = 0,
  boolean = 1,
  int64 = 2,
  float64 = 3,
  string = 4,
  bytes = 5,
  list = 6,
  map = 7,
  array = 8,
};

class value;
using list = std::vector<value>;
using map = std::vector<std::pair<std::string, value>>;

class value {
 public:
  using storage = std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, bytes,
                               list, map, typed_array>;

  value() noexcept : storage_(nullptr) {}
  value(std::nullptr_t) noexcept : storage_(nullptr) {}
  value(bool b) noexcept : storage_(b) {}
  // Every integer type becomes int64; an unsigned 64-bit value above INT64_MAX wraps, so
  // drivers that need the full range return a uint64 typed array instead.
  template <typename I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>,
                                         int> = 0>
  value(I i) noexcept : storage_(static_cast<std::int64_t>(i)) {}
  value(double d) noexcept : storage_(d) {}
  value(float f) noexcept : storage_(static_cast<double>(f)) {}
  value(std::string s) noexcept : storage_(std::move(s)) {}
  value(std::string_view s) : storage_(std::string(s)) {}
  value(const char* s) : storage_(std::string(s)) {}
  value(labhost::bytes b) noexcept : storage_(std::move(b)) {}
  value(labhost::list l) noexcept : storage_(std::move(l)) {}
  value(labhost::map m) noexcept : storage_(std::move(m)) {}
  value(typed_array a) noexcept : storage_(std::move(a)) {}

  value_kind kind() const noexcept { return static_cast<value_kind>(storage_.index()); }

  bool is_null() const noexcept { return kind() == value_kind::null; }
  bool is_bool() const noexcept { return kind() == value_kind::boolean; }
  bool is_int() const noexcept { return kind() == value_kind::int64; }
  bool is_float() const noexcept { return kind() == value_kind::float64; }
  bool is_number() const noexcept { return is_int() || is_float(); }
  bool is_string() const noexcept { return kind() == value_kind::string; }
  bool is_bytes() const noexcept { return kind() == value_kind::bytes; }
  bool is_list() const noexcept { return kind() == value_kind::list; }
  bool is_map() const noexcept { return kind() == value_kind::map; }
  bool is_array() const noexcept { return kind() == value_kind::array; }

  // Accessors. REQUIRES: the value is of that kind (checked by std::get, which throws
  // std::bad_variant_access otherwise).
  bool as_bool() const { return std::get<bool>(storage_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(storage_); }
  double as_float() const { return std::get<double>(storage_); }
  /// An int64 or float64 as double.
  double as_number() const { return is_int() ? static_cast<double>(as_int()) : as_float(); }
  const std::string& as_string() const { return std::get<std::string>(storage_); }
  std::string& as_string() { return std::get<std::string>(storage_); }
  const labhost::bytes& as_bytes() const { return std::get<labhost::bytes>(storage_); }
  labhost::bytes& as_bytes() { return std::get<labhost::bytes>(storage_); }
  const labhost::list& as_list() const { return std::get<labhost::list>(storage_); }
  labhost::list& as_list() { return std::get<labhost::list>(storage_); }
  const labhost::map& as_map() const { return std::get<labhost::map>(storage_); }
  labhost::map& as_map() { return std::get<labhost::map>(storage_); }
  const typed_array& as_array() const { return std::get<typed_array>(storage_); }
  typed_array& as_array() { return std::get<typed_array>(storage_); }

  /// The entry `key` of a map, or nullptr when absent or when this is not a map.
  const value* find(std::string_view key) const noexcept {
    if (!is_map()) return nullptr;
    for (const auto& [k, v] : std::get<labhost::map>(storage_))
      if (k == key) return &v;
    return nullptr;
  }

  const storage& get_storage() const noexcept { return storage_; }

  bool operator==(const value&) const = default;

 private:
  storage storage_;
};

/// Short name of a kind, as used in error messages ("float64", "list", ...).
constexpr std::string_view kind_name(value_kind kind) noexcept {
  switch (kind) {
    case value_kind::null: return "null";
    case value_kind::boolean: return "bool";
    case value_kind::int64: return "int64";
    case value_kind::float64: return "float64";
    case value_kind::string: return "string";
    case value_kind::bytes: return "bytes";
    case value_kind::list: return "list";
    case value_kind::map: return "map";
    case value_kind::array: return "array";
  }
  return "unknown";
}

}  // namespace labhost

#endif  // LABHOST_VALUE_H
