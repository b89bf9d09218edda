// host.json validation: every error names its path and what was expected.
#define BOOST_TEST_MODULE host_config
#include <boost/test/unit_test.hpp>
#include <fstream>

#include "host/host_config.h"
#include "test_daemon.h"

using namespace labhost;
using namespace labhost::host;

namespace {

struct folder {
  testing::temp_dir dir;
  folder() { testing::make_plugin_folder(dir.path()); }
  host_config parse(const std::string& text) { return parse_host_config(text, dir.path() / "host.json"); }
  std::string error_of(const std::string& text) {
    try {
      parse(text);
    } catch (const config_error& e) {
      return e.what();
    }
    return "no error";
  }
};

std::string with_service(const std::string& service) {
  return R"({"daemons": {"main": {"address": "127.0.0.1:7701", "services": {"laser": )" + service + "}}}}";
}

}  // namespace

BOOST_AUTO_TEST_CASE(repository_host_json_is_valid) {
  auto config = load_host_config(std::filesystem::path(LABHOST_SOURCE_DIR) / "host.json");
  BOOST_TEST_REQUIRE(config.daemons.size() == 2u);
  const auto* main = config.find_daemon("main");
  BOOST_TEST_REQUIRE(main != nullptr);
  BOOST_TEST(main->address.to_string() == "127.0.0.1:7701");
  BOOST_TEST(main->services.size() == 3u);
  BOOST_TEST(config.find_daemon("camera")->address.port == 7702);
}

BOOST_AUTO_TEST_CASE(defaults_apply) {
  folder f;
  auto config = f.parse(with_service(R"({"driver": "sim_laser"})"));
  const auto& d = config.daemons.at(0);
  BOOST_TEST((d.type == server_type::threaded));
  BOOST_TEST(d.pool_size == 4u);
  BOOST_TEST(d.busy_poll.count() == 50);
  BOOST_TEST(d.lease.count() == 10'000);
  BOOST_TEST((d.services.at(0).mode == instance_mode::single));
  BOOST_TEST(d.services.at(0).params.is_map());
}

BOOST_AUTO_TEST_CASE(misspelt_driver_names_the_path_and_suggests) {
  folder f;
  std::string e = f.error_of(with_service(R"({"driver": "sim_lazer"})"));
  BOOST_TEST(e.starts_with("daemons.main.services.laser.driver: no plugin \"sim_lazer\" in "), e);
  BOOST_TEST(e.ends_with("(did you mean sim_laser?)"), e);
}

BOOST_AUTO_TEST_CASE(driver_paths_are_refused) {
  folder f;
  for (auto bad : {"../sim_laser", "/usr/lib/x.so", "sub/sim_laser", ""}) {
    std::string e = f.error_of(with_service(std::string(R"({"driver": ")") + bad + "\"}"));
    BOOST_TEST(e.starts_with("daemons.main.services.laser.driver: "), e);
    BOOST_TEST(e.find("not a plain plugin name") != std::string::npos, e);
  }
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_errors_at_every_level) {
  folder f;
  BOOST_TEST(f.error_of(R"({"daemons": {}, "colour": 1})").starts_with("colour: unknown key"));
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:1", "pool": 3, "services": {}}}})")
                 .starts_with("daemons.main.pool: unknown key"));
  BOOST_TEST(f.error_of(with_service(R"({"driver": "sim_laser", "param": {}})"))
                 .starts_with("daemons.main.services.laser.param: unknown key"));
}

BOOST_AUTO_TEST_CASE(duplicate_ports_are_errors) {
  folder f;
  std::string e = f.error_of(R"({"daemons": {
      "a": {"address": "127.0.0.1:7701", "services": {}},
      "b": {"address": "127.0.0.1:7701", "services": {}}}})");
  BOOST_TEST(e == "daemons.b.address: port 7701 is already used by daemon a");
}

BOOST_AUTO_TEST_CASE(wrong_types_and_ranges_name_the_path) {
  folder f;
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": 7701, "services": {}}}})") ==
             "daemons.main.address: expected \"HOST:PORT\"");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:99999", "services": {}}}})") ==
             "daemons.main.address: \"127.0.0.1:99999\": port must be 0 to 65535");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:1", "pool_size": 0, "services": {}}}})") ==
             "daemons.main.pool_size: 0 is out of range (expected 1 to 256)");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:1", "busy_poll_us": -1, "services": {}}}})") ==
             "daemons.main.busy_poll_us: -1 is out of range (expected 0 to 1000000)");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:1", "busy_poll_us": 2.5, "services": {}}}})") ==
             "daemons.main.busy_poll_us: expected an integer");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:1", "server_type": "forked", "services": {}}}})") ==
             "daemons.main.server_type: \"forked\" (expected threaded or multiplexed)");
  BOOST_TEST(f.error_of(with_service(R"({"driver": "sim_laser", "mode": "always"})")) ==
             "daemons.main.services.laser.mode: \"always\" (expected single, session or percall)");
  BOOST_TEST(f.error_of(with_service(R"({"driver": "sim_laser", "params": [1]})")) ==
             "daemons.main.services.laser.params: expected an object");
  BOOST_TEST(f.error_of(with_service(R"({"params": {}})")) ==
             "daemons.main.services.laser.driver: missing (expected a plugin name)");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "127.0.0.1:1"}}})") ==
             "daemons.main.services: missing (expected an object of services)");
}

BOOST_AUTO_TEST_CASE(broken_json_says_so) {
  folder f;
  std::string e = f.error_of(R"({"daemons": {)");
  BOOST_TEST(e.find("not valid JSON") != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(comments_and_trailing_commas_are_allowed) {
  folder f;
  auto config = f.parse("{\n // the lab's laser\n \"daemons\": {\"main\": {\"address\": \"127.0.0.1:7701\", "
                        "\"services\": {\"laser\": {\"driver\": \"sim_laser\",},},},},}");
  BOOST_TEST(config.daemons.size() == 1u);
}

BOOST_AUTO_TEST_CASE(missing_plugin_folder_is_an_error) {
  folder f;
  BOOST_TEST(f.error_of(R"({"plugin_dir": "nowhere", "daemons": {}})").starts_with("plugin_dir: "));
}

// The parser itself is pinned by tests/vectors/addresses.json (conformance_test); host.json
// adds where port 0, "a free port", may be written.
BOOST_AUTO_TEST_CASE(port_zero_is_for_listening_only) {
  folder f;
  auto config = f.parse(R"({"nameserver": {"listen": "127.0.0.1:0"},
                            "daemons": {"main": {"address": "[::1]:0", "services": {}}}})");
  BOOST_TEST(config.find_daemon("main")->address.port == 0);
  BOOST_TEST(config.find_daemon("main")->address.host == "::1");
  BOOST_TEST(config.nameserver->listen.port == 0);
  BOOST_TEST(f.error_of(R"({"register_with": ["127.0.0.1:0"], "daemons": {}})") ==
             "register_with[0]: \"127.0.0.1:0\": port must be 1 to 65535");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "::1:7701", "services": {}}}})") ==
             "daemons.main.address: \"::1:7701\": write an IPv6 host in brackets, [ADDRESS]:PORT");
  BOOST_TEST(f.error_of(R"({"daemons": {"main": {"address": "7701", "services": {}}}})") ==
             "daemons.main.address: \"7701\": expected HOST:PORT");
}

BOOST_AUTO_TEST_CASE(nameserver_state_and_logging_keys_are_validated) {
  folder f;
  auto config = f.parse(R"({"nameserver": {"listen": "127.0.0.1:7700", "lease_s": 5},
      "state_dir": "/var/lib/labhost", "logging": {"level": "debug", "file": "logs/labhost.log", "keep": 3},
      "daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}}})");
  BOOST_TEST_REQUIRE(config.nameserver.has_value());
  BOOST_TEST(config.nameserver->lease.count() == 5000);
  BOOST_TEST(config.state_dir == "/var/lib/labhost");
  BOOST_TEST(config.logging.level == "debug");
  BOOST_TEST(config.logging.file == f.dir.path() / "logs/labhost.log");
  BOOST_TEST(config.logging.keep_files == 3u);
  // Daemons register with the host's own nameserver unless register_with says otherwise.
  BOOST_TEST_REQUIRE(config.daemons.at(0).register_with.size() == 1u);
  BOOST_TEST(config.daemons.at(0).register_with[0].to_string() == "127.0.0.1:7700");
  auto explicit_list = f.parse(R"({"register_with": ["10.0.0.5:7700", "[::1]:7700"], "daemons": {}})");
  BOOST_TEST(explicit_list.register_with.size() == 2u);
  BOOST_TEST(!explicit_list.nameserver.has_value());

  BOOST_TEST(f.error_of(R"({"nameserver": {"listen": "x"}, "daemons": {}})") ==
             "nameserver.listen: \"x\": expected HOST:PORT");
  BOOST_TEST(f.error_of(R"({"nameserver": {"listen": "127.0.0.1:7700", "port": 1}, "daemons": {}})")
                 .starts_with("nameserver.port: unknown key"));
  BOOST_TEST(f.error_of(R"({"register_with": "127.0.0.1:7700", "daemons": {}})") ==
             "register_with: expected a list of \"HOST:PORT\"");
  BOOST_TEST(f.error_of(R"({"register_with": ["127.0.0.1"], "daemons": {}})") ==
             "register_with[0]: \"127.0.0.1\": expected HOST:PORT");
  BOOST_TEST(f.error_of(R"({"logging": {"level": "loud"}, "daemons": {}})") ==
             "logging.level: \"loud\" (expected debug, info, warning or error)");
  BOOST_TEST(f.error_of(R"({"nameserver": {"listen": "127.0.0.1:7701"},
      "daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}}})") ==
             "nameserver.listen: port 7701 is already used by daemon main");
}

BOOST_AUTO_TEST_CASE(reload_fingerprints_change_with_the_daemon_and_only_then) {
  folder f;
  auto a = f.parse(with_service(R"({"driver": "sim_laser", "params": {"wavelength_nm": 1550}})"));
  auto same = f.parse(with_service(R"({"driver": "sim_laser", "params": {"wavelength_nm": 1550}})"));
  auto other = f.parse(with_service(R"({"driver": "sim_laser", "params": {"wavelength_nm": 1600}})"));
  BOOST_TEST(fingerprint(a.daemons[0], a) == fingerprint(same.daemons[0], same));
  BOOST_TEST(fingerprint(a.daemons[0], a) != fingerprint(other.daemons[0], other));
  auto no_polling = f.parse(R"({"daemons": {"main": {"address": "127.0.0.1:7701", "busy_poll_us": 0, "services":
                               {"laser": {"driver": "sim_laser", "params": {"wavelength_nm": 1550}}}}}})");
  BOOST_TEST(no_polling.daemons[0].busy_poll.count() == 0);
  BOOST_TEST(fingerprint(a.daemons[0], a) != fingerprint(no_polling.daemons[0], no_polling));
}

BOOST_AUTO_TEST_CASE(labhost_check_reports_the_first_error_and_exits_non_zero) {
  folder f;
  std::ofstream(f.dir.path() / "host.json") << with_service(R"({"driver": "sim_lazer"})");
  auto r = testing::run({(testing::bin_dir() / "labhost").string(), "check", "--config",
                         (f.dir.path() / "host.json").string()});
  BOOST_TEST(r.status == 3);
  BOOST_TEST(r.err.find("invalid host.json: daemons.main.services.laser.driver: no plugin \"sim_lazer\"") !=
                 std::string::npos, r.err);
  std::ofstream(f.dir.path() / "host.json") << with_service(R"({"driver": "sim_laser"})");
  auto ok = testing::run({(testing::bin_dir() / "labhost").string(), "check", "--config",
                          (f.dir.path() / "host.json").string()});
  BOOST_TEST(ok.status == 0, ok.err);
  BOOST_TEST(ok.out.find(": ok (1 daemon(s), 1 service(s))") != std::string::npos, ok.out);
}

BOOST_AUTO_TEST_CASE(journal_and_http_keys_are_validated) {
  folder f;
  auto config = f.parse(R"({"state_dir": "state", "journal": {"rotate_bytes": 65536, "keep_files": 2},
      "http": {"listen": "127.0.0.1:7780", "refresh_s": 0.5},
      "daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}}})");
  BOOST_TEST(config.daemons.at(0).journal_file == f.dir.path() / "state" / "journal" / "main.jsonl");
  BOOST_TEST(config.daemons.at(0).journal_rotate_bytes == 65536u);
  BOOST_TEST(config.daemons.at(0).journal_keep_files == 2u);
  BOOST_TEST_REQUIRE(config.http.has_value());
  BOOST_TEST(config.http->listen.to_string() == "127.0.0.1:7780");
  BOOST_TEST(config.http->refresh_s == 0.5);
  // Defaults: a journal, no status page; "http": {} serves it on loopback.
  auto plain = f.parse(R"({"daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}}})");
  BOOST_TEST(!plain.daemons.at(0).journal_file.empty());
  BOOST_TEST(!plain.http.has_value());
  BOOST_TEST(f.parse(R"({"http": {}, "daemons": {}})").http->listen.to_string() == "127.0.0.1:7780");
  BOOST_TEST(f.parse(R"({"journal": {"enabled": false}, "daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}}})")
                 .daemons.at(0)
                 .journal_file.empty());

  BOOST_TEST(f.error_of(R"({"journal": {"keep": 2}, "daemons": {}})").starts_with("journal.keep: unknown key"));
  BOOST_TEST(f.error_of(R"({"http": {"refresh_s": 0}, "daemons": {}})").starts_with("http.refresh_s:"));
  // Off loopback: the daemons' rule, and TLS when the page would ask for the secret.
  BOOST_TEST(f.error_of(R"({"http": {"listen": "0.0.0.0:7780"}, "daemons": {}})") ==
             "http.listen: 0.0.0.0:7780 is reachable from the network, and host.json sets neither "
             "auth.secret_file nor tls.verify_clients: set one, or \"insecure\": true to let anyone on the network "
             "see it");
  const auto secret = f.dir.path() / "lab.secret";
  std::ofstream(secret) << "s3cret\n";
  std::filesystem::permissions(secret, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  BOOST_TEST(f.error_of(R"({"auth": {"secret_file": ")" + secret.string() +
                        R"("}, "http": {"listen": "0.0.0.0:7780"}, "daemons": {}})") ==
             "http.listen: 0.0.0.0:7780 is reachable from the network, and the page would ask for the secret "
             "without TLS: add \"tls\" to host.json, or listen on loopback");
  BOOST_TEST(f.parse(R"({"insecure": true, "http": {"listen": "0.0.0.0:7780"}, "daemons": {}})").http.has_value());
  BOOST_TEST(f.error_of(R"({"http": {"listen": "127.0.0.1:7701"},
      "daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}}})") ==
             "http.listen: port 7701 is already used by daemon main");
}

BOOST_AUTO_TEST_CASE(lan_discovery_is_on_unless_host_json_says_otherwise) {
  folder f;
  const std::string daemons = R"("daemons": {"main": {"address": "127.0.0.1:7701", "services": {}}})";
  BOOST_TEST(f.parse("{" + daemons + "}").daemons.at(0).lan_announce);
  auto quiet = f.parse(R"({"lan_discovery": {"announce": false}, )" + daemons + "}");
  BOOST_TEST(!quiet.daemons.at(0).lan_announce);
  BOOST_TEST(fingerprint(quiet.daemons.at(0), quiet) != fingerprint(f.parse("{" + daemons + "}").daemons.at(0),
                                                                    f.parse("{" + daemons + "}")));
  BOOST_TEST(f.error_of(R"({"lan_discovery": {"announce": "yes"}, "daemons": {}})").starts_with("lan_discovery.announce:"));
  BOOST_TEST(f.error_of(R"({"lan_discovery": {"name": "x"}, "daemons": {}})").starts_with("lan_discovery.name: unknown key"));
}
