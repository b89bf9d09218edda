// messages.h: the payloads of each message type, as labhost::value maps (docs/protocol.md).
//
// Each payload is one encoded value; control messages are maps with the keys below. Parsing
// takes untrusted values: a missing key or a wrong type is a bad_message error, never a throw.
#ifndef LABHOST_PROTOCOL_MESSAGES_H
#define LABHOST_PROTOCOL_MESSAGES_H

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frame.h"
#include "labhost/description.h"
#include "labhost/errors.h"
#include "labhost/value.h"
#include "labhost/value_codec.h"

namespace labhost::protocol {

struct hello_message {
  std::string client_name;    // "user@host" unless the client sets another
  std::int64_t pid = 0;
  std::int64_t min_version = oldest_protocol_version;
  std::int64_t max_version = protocol_version;
  std::string session_token;  // non-empty to resume an earlier session
  std::vector<std::uint8_t> client_nonce;  // for a daemon that requires a secret
};

struct challenge_message {
  std::vector<std::uint8_t> server_nonce;
  std::vector<std::uint8_t> server_proof;  // the daemon's proof that it knows the secret
};

struct authenticate_message {
  std::vector<std::uint8_t> client_proof;
};

struct welcome_message {
  std::int64_t version = protocol_version;
  std::string session_token;  // server-issued; present it again to resume
  std::string daemon;         // daemon name
  std::string server_version;
  std::int64_t lease_ms = 0;  // the session ends after this long without a sign of life
  bool resumed = false;       // true when hello's session_token resumed a live session
};

struct call_message {
  std::string service;
  std::string method;
  list args;
  map kwargs;
  bool oneway = false;  // no result is sent (version 2); a failure is still sent as an error
};

/// subscribe (version 2): receive the events of one topic of a service.
struct subscribe_message {
  std::string service;
  std::string topic;
  std::int64_t queue = 16;  // events kept for a subscriber that cannot take them, 1..1024
  double max_rate = 0;      // events per second at most; 0: no limit
};
inline constexpr std::int64_t max_subscriber_queue = 1024;

/// The result of subscribe.
struct subscription_report {
  std::int64_t subscription = 0;  // id, unique in the session; the request id of its events
  std::string service;
  std::string topic;
  std::string type;
  std::int64_t queue = 0;
  double max_rate = 0;
};

struct unsubscribe_message {
  std::int64_t subscription = 0;
};

/// An event frame's payload.
struct event_message {
  std::int64_t subscription = 0;
  std::int64_t seq = 0;      // its number on its topic, from 1
  std::int64_t dropped = 0;  // events of this subscription dropped since the previous one delivered
  double time = 0;           // when it was published, Unix seconds
  value data;                // the published value
};

struct lock_message {
  std::string service;
  std::int64_t wait_ms = 0;  // how long to wait for a held lock; 0 fails at once
};

struct unlock_message {
  std::string service;
  bool force = false;        // release another session's lock (administrators)
  std::string admin_secret;  // required with force
};

struct lock_status_message {
  std::string service;  // empty: every service of the daemon
};

/// One service's lock, as lock and lock_status report it.
struct lock_report {
  std::string service;
  bool locked = false;
  bool yours = false;           // held by the asking session
  std::string holder_name;      // client name of the holder
  std::int64_t holder_pid = 0;
  std::string holder_address;
  double since = 0;             // Unix time in seconds
  std::int64_t lease_left_ms = 0;  // until the holder's session ends without a sign of life
};

/// Upper bounds, in seconds, of the buckets of a daemon's call-duration histogram (`describe`
/// with stats; a last bucket, +Inf, is implied): from 50 us (a quick call) to 10 s (a long
/// stage move).
inline constexpr std::array<double, 14> call_duration_bounds_s = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                                  0.005,   0.01,   0.025,   0.05,   0.1,   0.5,
                                                                  2.5,     10};

struct describe_message {
  std::string service;  // empty: describe the daemon (its services)
  bool stats = false;   // with the daemon: add its figures (calls, errors, durations, ...)
};

value to_value(const hello_message& m);
value to_value(const challenge_message& m);
value to_value(const authenticate_message& m);
value to_value(const welcome_message& m);
value to_value(const call_message& m);
value to_value(const describe_message& m);
value to_value(const error& e);
value to_value(const lock_message& m);
value to_value(const unlock_message& m);
value to_value(const lock_status_message& m);
value to_value(const lock_report& r);
value to_value(const service_description& s);
value to_value(const daemon_description& d);
value to_value(const subscribe_message& m);
value to_value(const subscription_report& r);
value to_value(const unsubscribe_message& m);
value to_value(const event_message& m);

result<hello_message> parse_hello(const value& v);
result<challenge_message> parse_challenge(const value& v);
result<authenticate_message> parse_authenticate(const value& v);
result<welcome_message> parse_welcome(const value& v);
result<call_message> parse_call(value&& v);
result<describe_message> parse_describe(const value& v);
error parse_error(const value& v);
result<lock_message> parse_lock(const value& v);
result<unlock_message> parse_unlock(const value& v);
result<lock_status_message> parse_lock_status(const value& v);
result<lock_report> parse_lock_report(const value& v);
result<service_description> parse_service_description(const value& v);
result<daemon_description> parse_daemon_description(const value& v);
result<subscribe_message> parse_subscribe(const value& v);
result<subscription_report> parse_subscription_report(const value& v);
result<unsubscribe_message> parse_unsubscribe(const value& v);
/// Moves the value out of `v`: an event may carry megabytes.
result<event_message> parse_event(value&& v);

/// An event's payload up to its value: the map of five entries, subscription, seq, dropped
/// and time, then the key "value", whose value follows (the daemon writes a published
/// value's bytes right after these, and the client reads a large array value in place).
inline constexpr std::size_t event_envelope_size = 5 + (4 + 12 + 9) + (4 + 3 + 9) + (4 + 7 + 9) + (4 + 4 + 9) + (4 + 5);
/// Appends the envelope of `m` (its data is not written) to `out`.
void write_event_envelope(const event_message& m, std::vector<std::uint8_t>& out);
/// The envelope at the start of `bytes` (event_envelope_size of them), when it is laid out
/// exactly so; nothing otherwise (then decode the payload whole).
std::optional<event_message> read_event_envelope(std::span<const std::uint8_t> bytes);

/// Decodes a payload; a malformed one is a bad_frame error naming the byte.
result<value> decode_payload(std::span<const std::uint8_t> payload,
                             const decode_limits& limits = {});

/// Encodes `payload` into a complete frame.
std::vector<std::uint8_t> encode_frame(message_type type, std::uint32_t request_id,
                                       const value& payload);

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_MESSAGES_H
