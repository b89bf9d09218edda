// TLS: a daemon that serves TLS (host.json "tls"), with and without client certificates, as the
// C++ client, labctl and `labhost up` (nameserver, registration, ps) see it.
#define BOOST_TEST_MODULE tls
#include <signal.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "host/host_config.h"
#include "raw_client.h"
#include "test_daemon.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;

namespace {

const std::string services = R"({"echo": {"driver": "test_echo"}, "camera": {"driver": "sim_camera"}})";

/// A throwaway lab CA and certificates (tests/support/make-test-pki), made once per run.
const std::filesystem::path& pki() {
  static temp_dir dir;
  static bool made = [] {
    auto script = std::filesystem::path(LABHOST_TEST_SOURCE_DIR) / "tests/support/make-test-pki";
    auto result = run({script.string(), dir.path().string()});
    if (result.status != 0) throw std::runtime_error("make-test-pki failed: " + result.err);
    return true;
  }();
  (void)made;
  return dir.path();
}

std::string file(const std::string& name) { return (pki() / name).string(); }

/// host.json's "tls" section with the host certificate `cert` (server or wrong-host).
std::string tls_keys(bool verify_clients, const std::string& cert = "server") {
  return R"("tls": {"cert_file": ")" + file(cert + ".crt") + R"(", "key_file": ")" + file(cert + ".key") +
         R"(", "ca_file": ")" + file("ca.crt") + R"(", "verify_clients": )" + (verify_clients ? "true" : "false") + "}";
}

client_options tls_client(const std::string& ca = "ca.crt", const std::string& identity = "") {
  client_options o;
  o.client_name = "tester@test";
  o.tls_ca_file = file(ca);
  if (!identity.empty()) {
    o.tls_cert_file = file(identity + ".crt");
    o.tls_key_file = file(identity + ".key");
  }
  return o;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }


}  // namespace

BOOST_AUTO_TEST_CASE(calls_work_over_tls_with_the_lab_ca) {
  test_daemon d(services, "", tls_keys(false));
  auto c = d.connect(tls_client());
  BOOST_TEST(c->call("echo", "add", {2, 3}).as_int() == 5);
  BOOST_TEST(c->call("echo", "echo", {"over TLS"}).as_string() == "over TLS");
  // The host name checked may be a DNS name of the certificate as well as its IP address.
  auto by_name = client::connect("localhost", d.port(), tls_client());
  BOOST_TEST(by_name->call("echo", "add", {1, 1}).as_int() == 2);
}

BOOST_AUTO_TEST_CASE(a_plain_client_is_told_the_daemon_serves_tls_only) {
  test_daemon d(services, "", tls_keys(false));
  client_options plain;
  auto e = error_of([&] { d.connect(plain); });
  BOOST_TEST((e.code == errc::tls_required), e.to_string());
  BOOST_TEST(contains(e.message, "serves TLS only"), e.message);
  BOOST_TEST(contains(d.log(), "a connection without TLS; refused (tls_required)"), d.log());
  BOOST_TEST(d.connect(tls_client())->call("echo", "add", {1, 2}).as_int() == 3);  // still serving
}

BOOST_AUTO_TEST_CASE(a_daemon_certificate_the_client_cannot_trust_is_refused) {
  test_daemon d(services, "", tls_keys(false));
  auto other_ca = error_of([&] { d.connect(tls_client("other-ca.crt")); });
  BOOST_TEST((other_ca.code == errc::auth_failed), other_ca.to_string());
  BOOST_TEST(contains(other_ca.message, "the daemon's TLS certificate was refused"), other_ca.message);

  // Signed by the right CA, but for another host: an impostor with a stolen certificate.
  test_daemon impostor(services, "", tls_keys(false, "wrong-host"));
  auto wrong_host = error_of([&] { impostor.connect(tls_client()); });
  BOOST_TEST((wrong_host.code == errc::auth_failed), wrong_host.to_string());
  BOOST_TEST((contains(wrong_host.message, "hostname mismatch") || contains(wrong_host.message, "IP address mismatch")),
             wrong_host.message);
}

BOOST_AUTO_TEST_CASE(a_tls_client_is_told_when_a_daemon_does_not_serve_tls) {
  test_daemon d(services);
  auto e = error_of([&] { d.connect(tls_client()); });
  BOOST_TEST((e.code == errc::connection_lost), e.to_string());
  BOOST_TEST(contains(e.message, "does not serve TLS"), e.message);
}

BOOST_AUTO_TEST_CASE(with_verify_clients_only_certificates_of_the_lab_ca_get_in) {
  test_daemon d(services, "", tls_keys(true));
  auto alice = d.connect(tls_client("ca.crt", "client"));
  BOOST_TEST(alice->call("echo", "add", {2, 2}).as_int() == 4);

  auto none = error_of([&] { d.connect(tls_client()); });
  BOOST_TEST((none.code == errc::auth_failed), none.to_string());
  BOOST_TEST(contains(none.message, "refused this client's TLS certificate"), none.message);
  auto stranger = error_of([&] { d.connect(tls_client("ca.crt", "stranger")); });
  BOOST_TEST((stranger.code == errc::auth_failed), stranger.to_string());
  BOOST_TEST(contains(d.log(), "TLS handshake failed"), d.log());

  // The refusals cost the session that got in nothing.
  BOOST_TEST(alice->call("echo", "add", {3, 3}).as_int() == 6);
}

BOOST_AUTO_TEST_CASE(many_threads_share_one_tls_connection_and_a_camera_frame_arrives_whole) {
  test_daemon d(
      R"({"echo": {"driver": "test_echo"}, "camera": {"driver": "sim_camera", "params": {"width": 1024, "height": 1024}}})",
      "", tls_keys(true));
  auto c = d.connect(tls_client("ca.crt", "client"));
  constexpr int threads = 4, calls = 200;
  std::vector<std::future<int>> results;
  for (int t = 0; t < threads; ++t)
    results.push_back(std::async(std::launch::async, [&, t] {
      int correct = 0;
      for (int i = 0; i < calls; ++i)
        if (c->call("echo", "add", {t * 1000, i}).as_int() == t * 1000 + i) ++correct;
      return correct;
    }));
  // Meanwhile, 2 MiB frames through the same connection.
  for (int frame = 0; frame < 3; ++frame) {
    auto before = c->call("camera", "frames").as_int();
    auto grabbed = c->call("camera", "grab");
    BOOST_TEST_REQUIRE(grabbed.is_array());
    const auto& pixels = grabbed.as_array();
    BOOST_TEST_REQUIRE((pixels.type == element_type::uint16));
    BOOST_TEST_REQUIRE(pixels.data.size() == 1024u * 1024u * 2u);
    std::uint16_t last;
    std::memcpy(&last, pixels.data.data() + pixels.data.size() - 2, 2);
    // pixel (x, y) = x + y + frames() + int(exposure) mod 65536, exposure 10 ms by default.
    BOOST_TEST(last == static_cast<std::uint16_t>(1023 + 1023 + before + 10));
  }
  for (auto& r : results) BOOST_TEST(r.get() == calls);
}

BOOST_AUTO_TEST_CASE(labctl_takes_tls_files_from_options_or_the_environment) {
  test_daemon d(services, "", tls_keys(true));
  auto labctl = (bin_dir() / "labctl").string();
  auto ok = run({labctl, "--tls-ca", file("ca.crt"), "--tls-cert", file("client.crt"), "--tls-key", file("client.key"),
                 "call", d.address("echo"), "add", "2", "3"});
  BOOST_TEST(ok.out == "5\n", ok.err);
  ::setenv("LABHOST_TLS_CA", file("ca.crt").c_str(), 1);
  ::setenv("LABHOST_TLS_CERT", file("client.crt").c_str(), 1);
  ::setenv("LABHOST_TLS_KEY", file("client.key").c_str(), 1);
  auto from_environment = run({labctl, "call", d.address("echo"), "add", "4", "3"});
  ::unsetenv("LABHOST_TLS_CERT");
  ::unsetenv("LABHOST_TLS_KEY");
  auto without_certificate = run({labctl, "call", d.address("echo"), "add", "4", "3"});
  ::unsetenv("LABHOST_TLS_CA");
  BOOST_TEST(from_environment.out == "7\n", from_environment.err);
  BOOST_TEST(without_certificate.status == 1);
  BOOST_TEST(contains(without_certificate.err, "auth_failed"), without_certificate.err);
  auto half = run({labctl, "--tls-ca", file("ca.crt"), "--tls-cert", file("client.crt"), "ping", d.address()});
  BOOST_TEST(half.status == 2);
  BOOST_TEST(contains(half.err, "--tls-cert and --tls-key go together"), half.err);
}

BOOST_AUTO_TEST_CASE(a_tls_host_comes_up_registers_over_mutual_tls_and_ps_sees_its_services) {
  temp_dir dir;
  make_plugin_folder(dir.path());
  auto ns_port = free_port();
  auto daemon_port = free_port();
  auto config = dir.path() / "host.json";
  std::ofstream(config) << R"({"plugin_dir": "plugins", "state_dir": "state", )" << tls_keys(true)
                        << R"(, "nameserver": {"listen": "127.0.0.1:)" << ns_port << R"("},
      "daemons": {"main": {"address": "127.0.0.1:)"
                        << daemon_port << R"(", "services": {"echo": {"driver": "test_echo"}}}}})";
  test_process up({(bin_dir() / "labhost").string(), "up", "--config", config.string()},
                  (dir.path() / "up.log").string(), true);
  auto ns = "127.0.0.1:" + std::to_string(ns_port);
  // The daemon registered with the nameserver, both over mutual TLS with the host's
  // certificate.
  BOOST_TEST(eventually([&] {
    for (const auto& r : list_names(ns, "", tls_client("ca.crt", "client")))
      if (r.name == "echo") return true;
    return false;
  }));
  auto echo = locate("echo", ns, tls_client("ca.crt", "client"));
  BOOST_TEST(echo.call("add", 20, 22).as_int() == 42);
  // Nobody gets names without a certificate.
  BOOST_TEST((error_of([&] { list_names(ns, "", tls_client()); }).code == errc::auth_failed));

  auto ps = run({(bin_dir() / "labhost").string(), "ps", "--json", "--config", config.string()});
  BOOST_TEST(contains(ps.out, R"("name":"echo","state":"ready")"), ps.out + ps.err);
  up.signal(SIGTERM);
  BOOST_TEST(up.wait_or_kill(30s) == 0);
}

BOOST_AUTO_TEST_CASE(host_json_tls_files_are_checked_before_anything_starts) {
  temp_dir dir;
  make_plugin_folder(dir.path());
  auto config = dir.path() / "host.json";
  auto labhost = (bin_dir() / "labhost").string();
  auto check = [&](const std::string& tls) {
    std::ofstream(config) << R"({"plugin_dir": "plugins", )" << tls
                          << R"(, "daemons": {"main": {"address": "127.0.0.1:0", "services": {}}}})";
    return run({labhost, "check", "--config", config.string()});
  };
  auto section = [&](const std::string& cert, const std::string& key, const std::string& ca) {
    return R"("tls": {"cert_file": ")" + cert + R"(", "key_file": ")" + key + R"(", "ca_file": ")" + ca + "\"}";
  };
  BOOST_TEST(check(section(file("server.crt"), file("server.key"), file("ca.crt"))).status == 0);

  auto mismatch = check(section(file("server.crt"), file("client.key"), file("ca.crt")));
  BOOST_TEST(mismatch.status == 3);
  BOOST_TEST(contains(mismatch.err, "tls.key_file: " + file("client.key") + " is not the key of"), mismatch.err);

  auto exposed = dir.path() / "exposed.key";
  std::filesystem::copy_file(file("server.key"), exposed);
  std::filesystem::permissions(exposed, std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  auto readable = check(section(file("server.crt"), exposed.string(), file("ca.crt")));
  BOOST_TEST(contains(readable.err, "may be read by others; restrict it to its owner (chmod 600)"), readable.err);

  auto not_pem = check(section(file("server.key"), file("server.key"), file("ca.crt")));
  BOOST_TEST(contains(not_pem.err, "tls.cert_file: " + file("server.key") + " is not a PEM certificate"), not_pem.err);
  auto missing = check(section(file("server.crt"), file("server.key"), file("nowhere.crt")));
  BOOST_TEST(contains(missing.err, "tls.ca_file: " + file("nowhere.crt") + " is not a readable file"), missing.err);
  auto no_ca =
      check(R"("tls": {"cert_file": ")" + file("server.crt") + R"(", "key_file": ")" + file("server.key") + "\"}");
  BOOST_TEST(contains(no_ca.err, "tls.ca_file: missing (expected a file path)"), no_ca.err);
}

BOOST_AUTO_TEST_CASE(client_certificates_let_a_daemon_listen_beyond_loopback_without_a_secret) {
  auto parse = [&](bool verify_clients) {
    return host::parse_host_config(R"({"plugin_dir": ")" + plugin_dir().string() + R"(", )" + tls_keys(verify_clients) +
                                       R"(, "daemons": {"lab": {"address": "0.0.0.0:7701", "services": {}}}})",
                                   pki() / "host.json");
  };
  BOOST_CHECK_NO_THROW(parse(true));
  try {
    parse(false);  // TLS alone encrypts, but lets anyone in
    BOOST_FAIL("expected a config_error");
  } catch (const host::config_error& e) {
    BOOST_TEST(contains(e.what(), "sets neither auth.secret_file nor tls.verify_clients"), e.what());
  }
}

BOOST_AUTO_TEST_CASE(connections_whose_tls_handshake_fails_give_their_slot_back) {
  // Regression: a connection that never got through TLS kept itself alive, and its
  // max_connections slot, so strangers and plain clients could lock everyone out.
  test_daemon d(services, R"("max_connections": 1, "handshake_timeout_s": 0.2)", tls_keys(true));
  auto gets_in = [&] {
    return eventually(
        [&] {
          return d.connect(tls_client("ca.crt", "client"))->call("echo", "add", {1, 1}).as_int() == 2;
        },
        10s);
  };
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST((error_of([&] { d.connect(client_options{}); }).code == errc::tls_required));  // plain client
    BOOST_TEST((error_of([&] { d.connect(tls_client("ca.crt", "stranger")); }).code == errc::auth_failed));
    BOOST_TEST((error_of([&] { d.connect(tls_client()); }).code == errc::auth_failed));  // no certificate
  }
  BOOST_TEST(gets_in());
  {
    raw_client silent(d.port());  // connects and never starts TLS: dropped at the handshake timeout
    BOOST_TEST(silent.closed_by_peer());
  }
  BOOST_TEST(gets_in());
}

BOOST_AUTO_TEST_CASE(labhost_own_connections_ignore_the_shells_tls_variables) {
  // Someone who uses TLS clients sets LABHOST_TLS_CA in their shell, then starts a plain host
  // from it: the daemons still register, and ps still reaches them, as host.json says.
  temp_dir dir;
  make_plugin_folder(dir.path());
  auto ns_port = free_port();
  auto config = dir.path() / "host.json";
  std::ofstream(config) << R"({"plugin_dir": "plugins", "state_dir": "state", "nameserver": {"listen": "127.0.0.1:)"
                        << ns_port << R"("}, "daemons": {"main": {"address": "127.0.0.1:)" << free_port()
                        << R"(", "services": {"echo": {"driver": "test_echo"}}}}})";
  ::setenv("LABHOST_TLS_CA", file("ca.crt").c_str(), 1);
  test_process up({(bin_dir() / "labhost").string(), "up", "--config", config.string()},
                  (dir.path() / "up.log").string(), true);
  client_options plain;
  plain.use_environment = false;
  BOOST_TEST(eventually([&] {
    for (const auto& r : list_names("127.0.0.1:" + std::to_string(ns_port), "", plain))
      if (r.name == "echo") return true;
    return false;
  }));
  auto ps = run({(bin_dir() / "labhost").string(), "ps", "--json", "--config", config.string()});
  ::unsetenv("LABHOST_TLS_CA");
  BOOST_TEST(contains(ps.out, R"("name":"echo","state":"ready")"), ps.out + ps.err);
  up.signal(SIGTERM);
  BOOST_TEST(up.wait_or_kill(30s) == 0);
}
