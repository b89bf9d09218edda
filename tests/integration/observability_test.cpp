// What a lab technician looks at: each daemon's figures (describe with stats), its audit
// journal and `labhost journal`, through real daemons.
#define BOOST_TEST_MODULE observability
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "protocol/messages.h"
#include "raw_client.h"
#include "test_daemon.h"
#include "test_process.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;
using protocol::message_type;
namespace json = boost::json;

namespace {

/// The daemon's figures, as `describe` with stats gives them.
value stats_of(const test_daemon& d) {
  raw_client c(d.port());
  c.hello("stats@test");
  protocol::describe_message m;
  m.stats = true;
  c.send(protocol::encode_frame(message_type::describe, 5, protocol::to_value(m)));
  auto reply = c.receive();
  BOOST_TEST_REQUIRE(reply.has_value());
  BOOST_TEST_REQUIRE((reply->first.type == message_type::description));
  const value* stats = reply->second.find("stats");
  BOOST_TEST_REQUIRE(stats != nullptr);
  return *stats;
}

std::int64_t int_at(const value& v, std::initializer_list<const char*> path) {
  const value* at = &v;
  for (const char* key : path) {
    at = at->find(key);
    if (at == nullptr) return -1;
  }
  return at->as_int();
}

/// Every journal record the daemon has written so far.
std::vector<json::object> journal_of(const test_daemon& d) {
  std::vector<json::object> out;
  std::ifstream in(d.folder() / "state" / "journal" / "test.jsonl");
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line).as_object());
  return out;
}

bool has_record(const std::vector<json::object>& records, const std::string& action, const std::string& outcome) {
  for (const auto& r : records)
    if (r.at("action") == action.c_str() && r.at("outcome") == outcome.c_str()) return true;
  return false;
}

run_result labhost_journal(const test_daemon& d, std::vector<std::string> args) {
  args.insert(args.begin(), {(bin_dir() / "labhost").string(), "journal", "--config", (d.folder() / "host.json").string()});
  return run(args);
}

}  // namespace

BOOST_AUTO_TEST_CASE(describe_with_stats_counts_calls_errors_durations_and_bytes) {
  test_daemon d(R"({"echo": {"driver": "test_echo"}, "idle": {"driver": "test_echo"}})");
  client_options o;
  o.client_name = "counter@test";
  auto c = d.connect(o);
  for (int i = 0; i < 10; ++i) c->call("echo", "add", {i, 1});
  for (int i = 0; i < 2; ++i) BOOST_TEST((error_of([&] { c->call("echo", "fail", {"no light"}); }).code == errc::driver_error));
  BOOST_TEST((error_of([&] { c->call("echo", "nope"); }).code == errc::no_such_method));
  const value stats = stats_of(d);
  const value& echo = *stats.find("services")->find("echo");
  BOOST_TEST(int_at(echo, {"calls"}) == 13);
  BOOST_TEST(int_at(echo, {"errors", "driver_error"}) == 2);
  BOOST_TEST(int_at(echo, {"errors", "no_such_method"}) == 1);
  std::int64_t in_buckets = 0;
  for (const auto& b : echo.find("duration_buckets")->as_list()) in_buckets += b.as_int();
  BOOST_TEST(in_buckets == 13);  // every call in one bucket of the histogram
  BOOST_TEST(echo.find("duration_s_sum")->as_float() > 0);
  BOOST_TEST(int_at(echo, {"bytes_in"}) > 13 * 30);
  BOOST_TEST(int_at(echo, {"bytes_out"}) > 10 * 9);
  BOOST_TEST(int_at(*stats.find("services")->find("idle"), {"calls"}) == 0);
  BOOST_TEST(int_at(stats, {"sessions"}) >= 1);
  BOOST_TEST(int_at(stats, {"connections"}) >= 1);
  // The latest errors: what failed, and for whom.
  const auto& recent = stats.find("recent_errors")->as_list();
  BOOST_TEST_REQUIRE(recent.size() == 3u);
  BOOST_TEST(recent[0].find("method")->as_string() == "fail");
  BOOST_TEST(recent[0].find("client")->as_string() == "counter@test");
  BOOST_TEST(recent[0].find("message")->as_string() == "no light");
  BOOST_TEST(recent[2].find("error")->as_string() == "no_such_method");
}

BOOST_AUTO_TEST_CASE(a_lock_request_that_waited_is_counted) {
  test_daemon d(R"({"laser": {"driver": "sim_laser"}})", R"("lockable": true)");
  client_options a, b;
  a.client_name = "holder@test";
  b.client_name = "waiter@test";
  auto holder = d.connect(a);
  auto waiter = d.connect(b);
  holder->lock("laser");
  BOOST_TEST((error_of([&] { waiter->lock("laser", 50ms); }).code == errc::locked));
  const value stats = stats_of(d);
  BOOST_TEST(int_at(*stats.find("services")->find("laser"), {"lock_waits"}) == 1);
  BOOST_TEST(stats.find("services")->find("laser")->find("lock_wait_s_sum")->as_float() >= 0.05);
}

BOOST_AUTO_TEST_CASE(the_journal_records_who_locked_unlocked_and_called_what) {
  temp_dir secrets;
  const auto admin = secrets.path() / "admin.secret";
  std::ofstream(admin) << "lab-admin\n";
  std::filesystem::permissions(admin, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  test_daemon d(R"({"echo": {"driver": "test_echo"}, "laser": {"driver": "sim_laser"}})",
                R"("lockable": true, "admin_secret_file": ")" + admin.string() + "\"");
  client_options o;
  o.client_name = "ana@lab-pc";
  auto ana = d.connect(o);
  ana->call("echo", "add", {1, 2});
  std::vector<std::uint16_t> frame(640 * 480, 7);
  ana->call("echo", "shape_of", {typed_array::from(frame).reshaped({480, 640})});
  ana->call("echo", "scale", {2.0}, {{"factor", 3.0}});
  BOOST_TEST((error_of([&] { ana->call("echo", "fail", {"jammed"}); }).code == errc::driver_error));
  ana->lock("laser");
  ana->unlock("laser");
  ana->lock("laser");
  o.client_name = "admin@lab-pc";
  auto boss = d.connect(o);
  boss->force_unlock("laser", "lab-admin");
  // The journal is written every 200 ms: wait for the last record.
  BOOST_TEST_REQUIRE(eventually([&] { return has_record(journal_of(d), "force_unlock", "ok"); }));
  const auto records = journal_of(d);
  BOOST_TEST(has_record(records, "call", "ok"));
  BOOST_TEST(has_record(records, "call", "driver_error"));
  BOOST_TEST(has_record(records, "lock", "ok"));
  BOOST_TEST(has_record(records, "unlock", "ok"));
  bool saw_add = false, saw_frame = false;
  for (const auto& r : records) {
    if (r.at("action") != "call") continue;
    BOOST_TEST(r.at("client") == "ana@lab-pc");
    BOOST_TEST(r.at("address").as_string().starts_with("127.0.0.1:"));
    if (r.at("method") == "add") {
      saw_add = true;
      BOOST_TEST(json::serialize(r.at("arguments")) == R"({"args":[1,2],"kwargs":{}})");
    }
    if (r.at("method") == "scale")
      BOOST_TEST(json::serialize(r.at("arguments")) == R"({"args":[2E0],"kwargs":{"factor":3E0}})");
    if (r.at("method") == "shape_of") {
      saw_frame = true;  // summarised: the type and shape, never 300 kB of pixels
      BOOST_TEST(json::serialize(r.at("arguments")) ==
                 R"({"args":[{"array":"uint16","shape":[480,640]}],"kwargs":{}})");
    }
  }
  BOOST_TEST(saw_add);
  BOOST_TEST(saw_frame);
  for (const auto& r : records)
    if (r.at("action") == "force_unlock") {
      BOOST_TEST(r.at("client") == "admin@lab-pc");
      BOOST_TEST(json::serialize(r.at("arguments")) == R"({"holder":"ana@lab-pc"})");
    }
}

BOOST_AUTO_TEST_CASE(labhost_journal_filters_by_service_and_time) {
  test_daemon d(R"({"echo": {"driver": "test_echo"}, "laser": {"driver": "sim_laser"}})", R"("lockable": true)");
  client_options o;
  o.client_name = "ana@lab-pc";
  auto ana = d.connect(o);
  ana->call("echo", "add", {1, 2});
  ana->call("laser", "set_wavelength", {1550.5});
  ana->lock("laser");
  BOOST_TEST_REQUIRE(eventually([&] { return has_record(journal_of(d), "lock", "ok"); }));

  auto human = labhost_journal(d, {});
  BOOST_TEST(human.status == 0, human.err);
  BOOST_TEST(human.out.find("test/echo  call add(1, 2)  by ana@lab-pc (pid ") != std::string::npos, human.out);
  BOOST_TEST(human.out.find("test/laser  call set_wavelength(1550.5)") != std::string::npos, human.out);
  BOOST_TEST(human.out.find("test/laser  lock  by ana@lab-pc") != std::string::npos, human.out);

  auto laser_only = labhost_journal(d, {"--service", "laser", "--json"});
  BOOST_TEST(laser_only.status == 0);
  std::istringstream lines(laser_only.out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    auto r = json::parse(line).as_object();
    BOOST_TEST(r.at("service") == "laser");
    BOOST_TEST(r.at("daemon") == "test");
    ++count;
  }
  BOOST_TEST(count == 2);

  BOOST_TEST(labhost_journal(d, {"--since", "1h"}).out == human.out);
  BOOST_TEST(labhost_journal(d, {"--since", "2099-01-01"}).out.empty());
  auto bad = labhost_journal(d, {"--since", "yesterday"});
  BOOST_TEST(bad.status == 2);
  BOOST_TEST(bad.err.find("--since: expected a time") != std::string::npos, bad.err);
  auto unknown = labhost_journal(d, {"--daemon", "ghost"});
  BOOST_TEST(unknown.status == 1);
  BOOST_TEST(unknown.err.find("no journal of a daemon \"ghost\"") != std::string::npos, unknown.err);
}

BOOST_AUTO_TEST_CASE(a_journal_can_be_turned_off) {
  test_daemon d(R"({"echo": {"driver": "test_echo"}})", "", R"("journal": {"enabled": false})");
  d.connect()->call("echo", "add", {1, 2});
  BOOST_TEST(!std::filesystem::exists(d.folder() / "state" / "journal"));
}
