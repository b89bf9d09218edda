// labhost/errors.h: typed errors, as they travel on the wire and reach clients.
//
// Every error has a stable numeric code and a stable snake_case name (docs/protocol.md lists
// them); clients match on either, never on the human message.
#ifndef LABHOST_ERRORS_H
#define LABHOST_ERRORS_H

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace labhost {

enum class errc : std::uint16_t {
  // protocol and dispatch
  bad_frame = 1,            // header or payload malformed, frame too large
  unsupported_version = 2,  // no protocol version in common
  no_such_service = 3,
  no_such_method = 4,
  bad_arguments = 5,        // wrong count, unknown keyword, type that does not fit
  driver_error = 6,         // the driver reported a failure
  service_unavailable = 7,  // the driver did not load or the instrument did not open
  busy = 8,                 // too many connections or requests in flight
  timeout = 9,
  shutting_down = 10,
  internal_error = 11,
  bad_message = 12,         // a well-formed frame whose message is not what its type requires
  // sessions, locks and subscriptions
  locked = 20,
  not_lock_owner = 21,
  not_lockable = 22,
  locked_out = 23,
  no_such_session = 24,
  no_such_topic = 25,         // subscribe: the service publishes no such topic
  no_such_subscription = 26,  // unsubscribe: the session has no such subscription
  // security
  auth_failed = 30,
  not_authorised = 31,
  tls_required = 32,  // a plain connection to a daemon that serves TLS only
  // nameserver
  name_taken = 40,
  no_such_name = 41,
  // raised by clients, never sent by a daemon
  connection_lost = 100,
  bad_address = 101,
};

/// The stable snake_case name of a code ("no_such_method").
constexpr std::string_view errc_name(errc code) noexcept {
  switch (code) {
    case errc::bad_frame: return "bad_frame";
    case errc::unsupported_version: return "unsupported_version";
    case errc::no_such_service: return "no_such_service";
    case errc::no_such_method: return "no_such_method";
    case errc::bad_arguments: return "bad_arguments";
    case errc::driver_error: return "driver_error";
    case errc::service_unavailable: return "service_unavailable";
    case errc::busy: return "busy";
    case errc::timeout: return "timeout";
    case errc::shutting_down: return "shutting_down";
    case errc::internal_error: return "internal_error";
    case errc::bad_message: return "bad_message";
    case errc::locked: return "locked";
    case errc::not_lock_owner: return "not_lock_owner";
    case errc::not_lockable: return "not_lockable";
    case errc::locked_out: return "locked_out";
    case errc::no_such_session: return "no_such_session";
    case errc::no_such_topic: return "no_such_topic";
    case errc::no_such_subscription: return "no_such_subscription";
    case errc::auth_failed: return "auth_failed";
    case errc::not_authorised: return "not_authorised";
    case errc::tls_required: return "tls_required";
    case errc::name_taken: return "name_taken";
    case errc::no_such_name: return "no_such_name";
    case errc::connection_lost: return "connection_lost";
    case errc::bad_address: return "bad_address";
  }
  return "unknown_error";
}

/// An error as a value: code plus human message.
struct error {
  errc code = errc::internal_error;
  std::string message;

  std::string_view name() const noexcept { return errc_name(code); }
  /// "no_such_method: laser has no method 'wavelenght'"
  std::string to_string() const { return std::string(name()) + ": " + message; }
};

/// A value or an error: labhost's one shape for returns where failure is an expected outcome
/// (decoding, dispatch, loading a plugin). `E` is `error` unless the caller needs more than a
/// typed error (plugin_library::load's refusal kind).
template <typename T, typename E = error>
class result {
  static_assert(!std::is_same_v<T, E>, "a result's value and error types must differ");

 public:
  result(T v) : state_(std::in_place_index<0>, std::move(v)) {}
  result(E e) : state_(std::in_place_index<1>, std::move(e)) {}

  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() { return std::get<0>(state_); }
  const T& value() const { return std::get<0>(state_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const E& err() const { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

/// Thrown by the client library when a request fails: the typed error it carries.
class remote_error : public std::runtime_error {
 public:
  explicit remote_error(error e) : std::runtime_error(e.to_string()), error_(std::move(e)) {}
  errc code() const noexcept { return error_.code; }
  std::string_view name() const noexcept { return error_.name(); }
  const std::string& message() const noexcept { return error_.message; }
  const labhost::error& get() const noexcept { return error_; }

 private:
  labhost::error error_;
};

}  // namespace labhost

#endif  // LABHOST_ERRORS_H
