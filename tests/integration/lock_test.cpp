// Sessions and locks on a lockable daemon: a lock never outlives its holder's session.
#define BOOST_TEST_MODULE locks
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "test_daemon.h"

using namespace labhost;
using namespace labhost::testing;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

const std::string services = R"({"laser": {"driver": "sim_laser"}, "stage": {"driver": "sim_stage"}})";
constexpr auto lease = 1000ms;  // lease_s below

std::shared_ptr<client> connect_as(const test_daemon& d, const std::string& name) {
  client_options o;
  o.client_name = name;
  return d.connect(o);
}


/// `labctl lock ADDRESS --hold` in its own process: the holder the tests kill and freeze.
std::unique_ptr<test_process> start_holder(const test_daemon& d, const std::string& service,
                                           const std::string& name) {
  auto p = std::make_unique<test_process>(std::vector<std::string>{
      (bin_dir() / "labctl").string(), "--client-name", name, "lock", d.address(service), "--hold"});
  auto line = p->read_line();
  BOOST_TEST_REQUIRE(line.has_value());
  BOOST_TEST_REQUIRE(line->find("locked " + d.address(service)) == 0u, *line);
  return p;
}

struct lockable_daemon {
  test_daemon d{services, R"("lockable": true, "lease_s": 1.0)"};
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(lockable, lockable_daemon)

BOOST_AUTO_TEST_CASE(a_lock_keeps_other_sessions_out_until_unlock) {
  auto older = connect_as(d, "older@test");  // connected before the lock
  auto holder = connect_as(d, "holder@test");
  auto l = holder->lock("laser");
  BOOST_TEST(l.locked);
  BOOST_TEST(l.yours);
  BOOST_TEST(l.holder_name == "holder@test");
  BOOST_TEST(holder->call("laser", "set_wavelength", {1560.0}).is_null());

  auto e = error_of([&] { older->call("laser", "wavelength"); });
  BOOST_TEST((e.code == errc::locked));
  BOOST_TEST(e.message.find("laser is locked by holder@test (pid ") == 0u, e.message);
  BOOST_TEST(e.message.find(" since ") != std::string::npos, e.message);
  auto newer = connect_as(d, "newer@test");
  BOOST_TEST((error_of([&] { newer->call("laser", "wavelength"); }).code == errc::locked));
  BOOST_TEST(newer->call("stage", "position").as_float() == 0.0);  // other services stay open

  // describe and lock status stay open to all
  BOOST_TEST(older->describe("laser").state == "ready");
  auto status = older->lock_status("laser").at(0);
  BOOST_TEST(status.locked);
  BOOST_TEST(!status.yours);
  BOOST_TEST(status.holder_name == "holder@test");
  BOOST_TEST(status.lease_left_ms > 0);
  BOOST_TEST(status.lease_left_ms <= 1000);

  holder->unlock("laser");
  BOOST_TEST(older->call("laser", "wavelength").as_float() == 1560.0);
  BOOST_TEST(!older->lock_status("laser").at(0).locked);
}

BOOST_AUTO_TEST_CASE(unlock_by_a_non_holder_is_not_lock_owner_and_relock_is_idempotent) {
  auto holder = connect_as(d, "holder@test");
  auto other = connect_as(d, "other@test");
  holder->lock("laser");
  holder->lock("laser");  // already yours: fine
  auto e = error_of([&] { other->unlock("laser"); });
  BOOST_TEST((e.code == errc::not_lock_owner));
  BOOST_TEST(e.message.find("holder@test") != std::string::npos);
  BOOST_TEST((error_of([&] { other->lock("laser"); }).code == errc::locked));
  holder->unlock("laser");
  BOOST_TEST((error_of([&] { holder->unlock("laser"); }).code == errc::not_lock_owner));
  BOOST_TEST((error_of([&] { holder->lock("nothing"); }).code == errc::no_such_service));
}

BOOST_AUTO_TEST_CASE(the_lock_is_released_when_the_holder_closes) {
  auto holder = connect_as(d, "holder@test");
  auto other = connect_as(d, "other@test");
  holder->lock("laser");
  holder->close();  // goodbye
  BOOST_TEST(other->lock("laser", 5s).yours);  // waits on the release, bounded
}

BOOST_AUTO_TEST_CASE(a_waiting_lock_gets_it_when_freed_and_times_out_otherwise) {
  auto holder = connect_as(d, "holder@test");
  auto other = connect_as(d, "other@test");
  holder->lock("laser");
  auto e = error_of([&] { other->lock("laser", 100ms); });
  BOOST_TEST((e.code == errc::locked));
  BOOST_TEST(e.message.find("after waiting 100 ms") != std::string::npos, e.message);
  auto waiting = std::async(std::launch::async, [&] { return other->lock("laser", 30s); });
  // lock_status has no waiting list; unlock once the waiter's request is surely queued is not
  // needed: a lock freed before the request arrives is granted at once too.
  holder->unlock("laser");
  BOOST_TEST(waiting.get().yours);
}

BOOST_AUTO_TEST_CASE(the_lock_is_released_when_the_holder_is_killed) {
  auto holder = start_holder(d, "laser", "killed@test");
  auto other = connect_as(d, "other@test");
  BOOST_TEST((error_of([&] { other->call("laser", "wavelength"); }).code == errc::locked));
  holder->signal(SIGKILL);
  holder->wait();
  auto start = clock_type::now();
  BOOST_TEST(other->lock("laser", 10s).yours);
  BOOST_TEST((clock_type::now() - start <= lease + 1s));
}

BOOST_AUTO_TEST_CASE(the_lock_of_a_frozen_holder_ends_with_its_lease) {
  auto holder = start_holder(d, "laser", "frozen@test");
  auto other = connect_as(d, "other@test");
  holder->signal(SIGSTOP);  // connection open, no more heartbeats
  auto stopped_at = clock_type::now();
  auto status = other->lock_status("laser").at(0);
  BOOST_TEST_REQUIRE(status.locked);
  // The lease runs from the holder's last sign of life, at most one lease before now.
  auto expires_at = clock_type::now() + std::chrono::milliseconds(status.lease_left_ms);
  auto l = other->lock("laser", 10s);
  auto freed_at = clock_type::now();
  BOOST_TEST(l.yours);
  BOOST_TEST((freed_at - stopped_at <= lease + 1s));
  BOOST_TEST((freed_at >= expires_at - 5ms));  // not before the lease ran out
  BOOST_TEST((freed_at - stopped_at >= lease - lease / 3 - 5ms));
  holder->signal(SIGKILL);
}

BOOST_AUTO_TEST_CASE(a_holder_that_reconnects_within_the_lease_keeps_its_lock) {
  auto holder = connect_as(d, "holder@test");
  auto other = connect_as(d, "other@test");
  holder->lock("laser");
  const std::string token = holder->session_token();
  BOOST_TEST(holder->resume());  // the link drops (a reset, as a network failure) and comes back
  BOOST_TEST(holder->session_token() == token);
  BOOST_TEST(holder->lock_status("laser").at(0).yours);
  BOOST_TEST(holder->call("laser", "wavelength").as_float() == 1550.0);
  BOOST_TEST((error_of([&] { other->call("laser", "wavelength"); }).code == errc::locked));
}

BOOST_AUTO_TEST_CASE(labctl_lock_hold_locks_reports_and_unlocks_on_sigterm) {
  auto holder = start_holder(d, "laser", "shell@test");
  auto json = run({(bin_dir() / "labctl").string(), "locks", d.address(), "--json"});
  BOOST_TEST(json.status == 0, json.err);
  BOOST_TEST(json.out.find(R"({"service":"laser","locked":true,"yours":false,"holder":{"client_name":"shell@test")") !=
                 std::string::npos,
             json.out);
  BOOST_TEST(json.out.find(R"({"service":"stage","locked":false})") != std::string::npos, json.out);
  auto human = run({(bin_dir() / "labctl").string(), "locks", d.address("laser")});
  BOOST_TEST(human.out.find("laser: locked by shell@test (pid ") == 0u, human.out);
  auto refused = run({(bin_dir() / "labctl").string(), "call", d.address("laser"), "wavelength"});
  BOOST_TEST(refused.status == 1);
  BOOST_TEST(refused.err.find("locked: laser is locked by shell@test") != std::string::npos, refused.err);
  auto not_owner = run({(bin_dir() / "labctl").string(), "unlock", d.address("laser")});
  BOOST_TEST(not_owner.err.find("not_lock_owner") != std::string::npos, not_owner.err);
  holder->signal(SIGTERM);
  BOOST_TEST(holder->wait() == 0);
  auto free = run({(bin_dir() / "labctl").string(), "locks", d.address("laser")});
  BOOST_TEST(free.out == "laser: free\n");
}

BOOST_AUTO_TEST_CASE(force_unlock_is_refused_where_no_admin_secret_is_configured) {
  auto holder = connect_as(d, "holder@test");
  holder->lock("laser");
  auto admin = connect_as(d, "admin@test");
  BOOST_TEST((error_of([&] { admin->force_unlock("laser", "anything"); }).code == errc::not_authorised));
}

BOOST_AUTO_TEST_CASE(a_lock_request_on_a_long_idle_session_is_still_served) {
  auto idle = connect_as(d, "idle@test");
  // Three leases of silence from the caller: heartbeats alone keep the session alive.
  std::this_thread::sleep_for(3 * lease);  // the only sleep here: idleness is what is tested
  BOOST_TEST(idle->lock("laser").yours);
  BOOST_TEST(idle->session_token().size() == 32u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(a_shared_daemon_refuses_locks) {
  test_daemon d(services);
  auto c = d.connect();
  auto e = error_of([&] { c->lock("laser"); });
  BOOST_TEST((e.code == errc::not_lockable));
  BOOST_TEST(e.message.find("shared") != std::string::npos);
  BOOST_TEST(!c->lock_status("laser").at(0).locked);
}

BOOST_AUTO_TEST_CASE(force_unlock_works_only_with_the_admin_secret) {
  temp_dir secrets;
  auto secret_file = secrets.path() / "admin.secret";
  // Blanks around the secret are not part of it, for the daemon and labctl alike (issue 12:
  // labctl kept the leading ones, so its --force was refused where the daemon read the file).
  std::ofstream(secret_file) << " \ts3cret-lab-admin \r\n";
  std::filesystem::permissions(secret_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  test_daemon d(services, R"("lockable": true, "admin_secret_file": ")" + secret_file.string() + "\"");
  auto holder = connect_as(d, "holder@test");
  holder->lock("laser");
  auto admin = connect_as(d, "admin@test");
  auto e = error_of([&] { admin->force_unlock("laser", "guess"); });
  BOOST_TEST((e.code == errc::not_authorised));
  BOOST_TEST(holder->lock_status("laser").at(0).yours);  // still held
  BOOST_TEST(d.log().find("force unlock refused: wrong admin secret from admin@test") != std::string::npos);

  admin->force_unlock("laser", "s3cret-lab-admin");
  auto out = error_of([&] { holder->call("laser", "wavelength"); });
  BOOST_TEST((out.code == errc::locked_out));
  BOOST_TEST(out.message.find("administrator") != std::string::npos);
  BOOST_TEST(holder->call("laser", "wavelength").as_float() == 1550.0);  // told once, then free

  // labctl's --force reads the secret from a file.
  holder->lock("laser");
  auto forced = run({(bin_dir() / "labctl").string(), "unlock", d.address("laser"), "--force",
                     "--admin-secret-file", secret_file.string()});
  BOOST_TEST(forced.status == 0, forced.err);
  BOOST_TEST((error_of([&] { holder->call("laser", "wavelength"); }).code == errc::locked_out));

  // `labctl lock --hold` notices that its lock was taken, says so, and exits 1.
  temp_dir logs;
  test_process shell({(bin_dir() / "labctl").string(), "--client-name", "shell@test", "lock", d.address("stage"),
                      "--hold"},
                     (logs.path() / "stderr").string());
  auto line = shell.read_line();
  BOOST_TEST_REQUIRE(line.has_value());
  admin->force_unlock("stage", "s3cret-lab-admin");
  BOOST_TEST(shell.wait_or_kill(std::chrono::seconds(30)) == 1);
  std::ifstream err(logs.path() / "stderr");
  std::string said((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  BOOST_TEST(said.find("labctl: lost the lock on " + d.address("stage")) == 0u, said);
}

BOOST_AUTO_TEST_CASE(a_world_readable_admin_secret_is_refused_at_start) {
  temp_dir secrets;
  auto secret_file = secrets.path() / "admin.secret";
  std::ofstream(secret_file) << "x\n";
  std::filesystem::permissions(secret_file, std::filesystem::perms::all);
  try {
    test_daemon d(services, R"("lockable": true, "admin_secret_file": ")" + secret_file.string() + "\"");
    BOOST_FAIL("the daemon started");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(std::string(e.what()).find("may be read by others") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(chaos_no_lock_survives_its_holders) {
  test_daemon d(services, R"("lockable": true, "lease_s": 1.0)");
  std::mt19937 random(12345);
  const auto give_up = clock_type::now() + 60s;  // bounded in time as well as in count
  std::vector<std::unique_ptr<test_process>> frozen;
  for (int round = 0; round < 24 && clock_type::now() < give_up; ++round) {
    const std::string service = (round % 2) ? "laser" : "stage";
    switch (random() % 5) {
      case 0: {  // lock, call, unlock
        auto c = connect_as(d, "polite@test");
        c->lock(service, 5s);
        c->call(service, service == "laser" ? "wavelength" : "position");
        c->unlock(service);
        break;
      }
      case 1: {  // lock, call, close without unlocking
        auto c = connect_as(d, "closer@test");
        c->lock(service, 5s);
        c->call(service, service == "laser" ? "wavelength" : "position");
        c->close();
        break;
      }
      case 2: {  // lock and drop the link (reset), never to come back
        client_options o;
        o.client_name = "dropper@test";
        o.reconnect = false;
        auto c = d.connect(o);
        c->lock(service, 5s);
        try {
          c->resume();
        } catch (const remote_error&) {
        }
        c.reset();
        break;
      }
      case 3: {  // a holder process killed
        auto p = std::make_unique<test_process>(std::vector<std::string>{
            (bin_dir() / "labctl").string(), "--client-name", "killed@test", "lock", d.address(service), "--hold", "--wait", "5"});
        p->read_line();
        p->signal(SIGKILL);
        p->wait();
        break;
      }
      case 4: {  // a holder process frozen
        auto p = std::make_unique<test_process>(std::vector<std::string>{
            (bin_dir() / "labctl").string(), "--client-name", "frozen@test", "lock", d.address(service), "--hold", "--wait", "5"});
        p->read_line();
        p->signal(SIGSTOP);
        frozen.push_back(std::move(p));
        break;
      }
    }
  }
  // Every lock comes free within a lease (plus the sweep): take both, then release them.
  auto last = connect_as(d, "last@test");
  BOOST_TEST(last->lock("laser", 10s).yours);
  BOOST_TEST(last->lock("stage", 10s).yours);
  last->unlock("laser");
  last->unlock("stage");
  for (const auto& l : last->lock_status()) BOOST_TEST(!l.locked, l.service);
  BOOST_TEST(last->call("laser", "wavelength").as_float() == 1550.0);
  for (auto& p : frozen) p->signal(SIGKILL);
}

BOOST_AUTO_TEST_CASE(a_long_call_on_a_multiplexed_daemon_ends_no_session) {
  // The daemon's only thread is busy for longer than the lease: nobody's heartbeat is read
  // meanwhile, and no session may be taken for silent because of it.
  test_daemon d(R"({"a": {"driver": "test_echo"}, "b": {"driver": "test_echo"}})",
                R"("lockable": true, "lease_s": 0.5, "server_type": "multiplexed")");
  auto holder = connect_as(d, "holder@test");
  auto bystander = connect_as(d, "bystander@test");
  holder->lock("b");
  const std::string bystander_token = bystander->session_token();
  auto fifo = d.folder() / "gate";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto blocked = std::async(std::launch::async, [&] { return holder->call("a", "wait_fifo", {fifo.string()}); });
  int fd = ::open(fifo.c_str(), O_WRONLY);  // returns once the call is inside the driver
  std::this_thread::sleep_for(3 * 500ms);   // three leases of a busy daemon: the subject here
  BOOST_TEST_REQUIRE(::write(fd, "x", 1) == 1);
  ::close(fd);
  blocked.get();
  BOOST_TEST(holder->lock_status("b").at(0).yours);
  // ... and the bystander's session is the same one: it was not ended and resumed.
  BOOST_TEST((error_of([&] { bystander->call("b", "sequence"); }).code == errc::locked));
  BOOST_TEST(bystander->session_token() == bystander_token);
  BOOST_TEST(d.log().find("no sign of life") == std::string::npos, d.log());
}
