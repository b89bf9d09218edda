// Who gets in (shared-secret handshake, safe listening default) and the limits that keep a
// hostile client from hurting the daemon.
#define BOOST_TEST_MODULE security
#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <future>

#include "protocol/auth.h"
#include "protocol/messages.h"
#include "raw_client.h"
#include "test_daemon.h"

using namespace labhost;
using namespace labhost::protocol;
using namespace labhost::testing;

namespace {

const std::string services = R"({"echo": {"driver": "test_echo"}, "other": {"driver": "test_echo"}})";


/// A secret file readable by its owner only, as the daemon demands.
struct secret_file {
  temp_dir dir;
  std::filesystem::path path = dir.path() / "lab.secret";
  explicit secret_file(const std::string& secret) {
    std::ofstream(path) << secret << "\n";
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  std::string host_keys() const { return R"("auth": {"secret_file": ")" + path.string() + "\"}"; }
};

client_options with_secret(const std::string& secret) {
  client_options o;
  o.secret = secret;
  o.client_name = "tester@test";
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_right_secret_gets_in_and_a_wrong_or_missing_one_does_not) {
  secret_file secret("correct horse battery staple");
  test_daemon d(services, "", secret.host_keys());
  auto c = d.connect(with_secret("correct horse battery staple"));
  BOOST_TEST(c->call("echo", "add", {1, 2}).as_int() == 3);

  auto wrong = error_of([&] { d.connect(with_secret("tr0ub4dor")); });
  BOOST_TEST((wrong.code == errc::auth_failed));
  BOOST_TEST(wrong.message == "the daemon could not prove it knows the secret");
  auto missing = error_of([&] { d.connect(with_secret("")); });
  BOOST_TEST((missing.code == errc::auth_failed));
  BOOST_TEST(missing.message.find("requires a secret") != std::string::npos, missing.message);

  // labctl: --secret-file, or LABHOST_SECRET_FILE in the environment.
  auto labctl = (bin_dir() / "labctl").string();
  BOOST_TEST(run({labctl, "--secret-file", secret.path.string(), "call", d.address("echo"), "add", "2", "3"}).out == "5\n");
  ::setenv("LABHOST_SECRET_FILE", secret.path.string().c_str(), 1);
  BOOST_TEST(run({labctl, "call", d.address("echo"), "add", "4", "3"}).out == "7\n");
  ::unsetenv("LABHOST_SECRET_FILE");
  auto refused = run({labctl, "call", d.address("echo"), "add", "4", "3"});
  BOOST_TEST(refused.status == 1);
  BOOST_TEST(refused.err.find("auth_failed") != std::string::npos, refused.err);
}

BOOST_AUTO_TEST_CASE(a_wrong_proof_is_refused_after_a_delay_and_logged_with_the_peer) {
  secret_file secret("s3cret");
  test_daemon d(services, "", secret.host_keys());
  raw_client s(d.port());
  hello_message hello{"mallory@test", 1, 1, 1, "", random_nonce()};
  s.send(encode_frame(message_type::hello, 1, to_value(hello)));
  auto challenge = s.receive();
  BOOST_TEST_REQUIRE((challenge->first.type == message_type::challenge));
  auto c = parse_challenge(challenge->second);
  BOOST_TEST_REQUIRE(c.ok());
  BOOST_TEST(proofs_equal(c->server_proof, server_proof("s3cret", hello.client_nonce, c->server_nonce)));
  auto start = std::chrono::steady_clock::now();
  s.send(encode_frame(message_type::authenticate, 2,
                      to_value(authenticate_message{client_proof("guess", c->server_nonce, hello.client_nonce)})));
  auto reply = s.receive();
  BOOST_TEST_REQUIRE(reply.has_value());
  BOOST_TEST((parse_error(reply->second).code == errc::auth_failed));
  BOOST_TEST((std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(400)));
  BOOST_TEST(s.closed_by_peer());
  BOOST_TEST(d.log().find("authentication failed for mallory@test from 127.0.0.1:") != std::string::npos, d.log());
  // Nothing but hello and authenticate is served before the proof.
  raw_client t(d.port());
  t.send(encode_frame(message_type::call, 1, to_value(call_message{"echo", "add", {1, 2}, {}})));
  BOOST_TEST((parse_error(t.receive()->second).code == errc::bad_message));
}

BOOST_AUTO_TEST_CASE(a_replayed_handshake_is_refused) {
  secret_file secret("s3cret");
  test_daemon d(services, "", secret.host_keys());
  hello_message hello{"alice@test", 1, 1, 1, "", random_nonce()};
  std::vector<std::uint8_t> recorded;
  {
    raw_client s(d.port());
    s.send(encode_frame(message_type::hello, 1, to_value(hello)));
    auto c = parse_challenge(s.receive()->second);
    BOOST_TEST_REQUIRE(c.ok());
    recorded = encode_frame(message_type::authenticate, 2,
                            to_value(authenticate_message{client_proof("s3cret", c->server_nonce, hello.client_nonce)}));
    s.send(recorded);
    BOOST_TEST((s.receive()->first.type == message_type::welcome));  // the genuine exchange works
  }
  // An eavesdropper replays both of alice's frames on a new connection.
  raw_client replay(d.port());
  replay.send(encode_frame(message_type::hello, 1, to_value(hello)));
  BOOST_TEST_REQUIRE((replay.receive()->first.type == message_type::challenge));  // a new server nonce
  replay.send(recorded);
  auto reply = replay.receive();
  BOOST_TEST_REQUIRE(reply.has_value());
  BOOST_TEST((reply->first.type == message_type::error));
  BOOST_TEST((parse_error(reply->second).code == errc::auth_failed));
}

BOOST_AUTO_TEST_CASE(listening_beyond_loopback_needs_a_secret_or_an_explicit_insecure) {
  temp_dir dir;
  make_plugin_folder(dir.path());
  auto config = dir.path() / "host.json";
  auto labhost = (bin_dir() / "labhost").string();
  std::ofstream(config) << R"({"daemons": {"lab": {"address": "0.0.0.0:0", "services": {"echo": {"driver": "test_echo"}}}}})";
  auto refused = run({labhost, "check", "--config", config.string()});
  BOOST_TEST(refused.status == 3);
  BOOST_TEST(refused.err.find("daemons.lab.address: 0.0.0.0:0 is reachable from the network, and host.json sets "
                              "neither auth.secret_file nor tls.verify_clients") != std::string::npos, refused.err);

  // With "insecure": true it starts, and says so at every start. (Clients use loopback.)
  // Not announced on the machine's real LAN (lan_discovery): a test keeps to itself.
  std::ofstream(config) << R"({"insecure": true, "lan_discovery": {"announce": false},
      "daemons": {"lab": {"address": "0.0.0.0:0", "services": {"echo": {"driver": "test_echo"}}}}})";
  test_process p({labhost, "daemon", "--config", config.string(), "--name", "lab"}, (dir.path() / "log").string());
  auto line = p.read_line();
  BOOST_TEST_REQUIRE(line.has_value());
  std::uint16_t port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  BOOST_TEST(client::connect("127.0.0.1", port)->call("echo", "add", {1, 1}).as_int() == 2);
  p.signal(SIGTERM);
  p.wait();
  std::ifstream log(dir.path() / "log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  BOOST_TEST(text.find("WITHOUT authentication") != std::string::npos, text);

  auto ns = run({labhost, "ns", "--listen", "0.0.0.0:0"});
  BOOST_TEST(ns.status == 1);
  BOOST_TEST(ns.err.find("refusing to start") != std::string::npos, ns.err);
}

BOOST_AUTO_TEST_CASE(a_client_that_says_nothing_is_dropped_after_the_handshake_timeout) {
  test_daemon d(services, R"("handshake_timeout_s": 0.2)");
  raw_client silent(d.port());
  auto reply = silent.receive();  // waits: the daemon speaks first, when the timeout fires
  BOOST_TEST_REQUIRE(reply.has_value());
  BOOST_TEST((parse_error(reply->second).code == errc::timeout));
  BOOST_TEST(silent.closed_by_peer());
  BOOST_TEST(d.connect()->call("echo", "add", {1, 1}).as_int() == 2);  // hello in time: served
}

BOOST_AUTO_TEST_CASE(requests_in_flight_beyond_the_limit_get_busy) {
  test_daemon d(services, R"("max_requests_in_flight": 1)");
  auto c = d.connect();
  auto first = std::async(std::launch::async, [&] { return c->call("echo", "wait_gate", {"g"}).as_int(); });
  auto helper = d.connect();
  helper->call("other", "wait_entered", {"g", 1});  // the first call is in flight, in the driver
  auto e = error_of([&] { c->call("other", "sequence"); });
  BOOST_TEST((e.code == errc::busy));
  BOOST_TEST(e.message.find("max_requests_in_flight") != std::string::npos, e.message);
  BOOST_TEST(helper->call("other", "sequence").is_int());  // other sessions are not limited by it
  helper->call("other", "open_gate", {"g"});
  BOOST_TEST(first.get() == 1);
  BOOST_TEST(c->call("other", "sequence").is_int());  // free again
}

BOOST_AUTO_TEST_CASE(a_client_dropped_for_a_frame_too_large_goes_on_with_its_session) {
  test_daemon d(services, R"("max_frame_bytes": 65536)");
  auto c = d.connect();
  const auto token = c->session_token();
  // The daemon answers bad_frame and drops the connection (it cannot skip the payload);
  // the client may see that answer, or only the dropped connection.
  auto e = error_of([&] { c->call("echo", "echo", {std::string(100000, 'x')}); });
  BOOST_TEST((e.code == errc::bad_frame || e.code == errc::connection_lost), e.to_string());
  BOOST_TEST(c->call("echo", "add", {1, 2}).as_int() == 3);  // reconnected
  BOOST_TEST(c->session_token() == token);                   // and the session resumed
}

BOOST_AUTO_TEST_CASE(values_nested_or_long_beyond_the_limits_are_refused) {
  test_daemon d(services, R"("max_value_depth": 6, "max_value_items": 100)");
  auto c = d.connect();
  value deep = list{};
  for (int i = 0; i < 8; ++i) deep = list{deep};
  auto e = error_of([&] { c->call("echo", "echo", {deep}); });
  BOOST_TEST((e.code == errc::bad_frame));
  BOOST_TEST(e.message.find("nested too deeply") != std::string::npos, e.message);
  e = error_of([&] { c->call("echo", "echo", {list(200, value(1))}); });
  BOOST_TEST(e.message.find("too many entries") != std::string::npos, e.message);
  BOOST_TEST(c->call("echo", "echo", {list(10, value(1))}).as_list().size() == 10u);
}
