// Loading real plugin files: a good one, and each kind of refusal with its own reason.
#define BOOST_TEST_MODULE plugin_loading
#include <sys/resource.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <limits>

#include "labhost/value_codec.h"
#include "plugin/plugin_library.h"
#include "test_daemon.h"

using namespace labhost;
using namespace labhost::plugin;

namespace {

std::shared_ptr<const plugin_library> load_ok(const std::filesystem::path& file) {
  auto loaded = plugin_library::load(file);
  if (!loaded) BOOST_FAIL("refused: " << loaded.err().message);
  return *loaded;
}

load_error load_refused(const std::filesystem::path& file) {
  auto loaded = plugin_library::load(file);
  BOOST_TEST_REQUIRE(!loaded.ok(), file << " was accepted");
  return loaded.err();
}

value invoke(driver_instance& d, const plugin_library& lib, const std::string& method, list args) {
  protocol::frame_buffer out;
  auto failure = d.invoke(static_cast<std::uint32_t>(lib.method_index(method)), encode(args), out, 1 << 20);
  if (failure) throw remote_error(*failure);
  return decode(out.contiguous()).decoded;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_good_plugin_loads_and_describes_itself) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  BOOST_TEST(lib->info().name == "test_echo");
  BOOST_TEST(lib->info().version == "0.1.0");
  BOOST_TEST(lib->info().abi_version == static_cast<std::uint32_t>(LABHOST_ABI_VERSION));
  int add = lib->method_index("add");
  BOOST_TEST_REQUIRE(add >= 0);
  const auto& m = lib->info().methods[static_cast<std::size_t>(add)];
  BOOST_TEST(m.params.size() == 2u);
  BOOST_TEST(m.params[0].name == "a");
  BOOST_TEST(m.params[0].type == "int64");
  BOOST_TEST(m.returns == "int64");
  BOOST_TEST(m.doc == "a + b.");
  BOOST_TEST(lib->method_index("nope") == -1);
}

BOOST_AUTO_TEST_CASE(loading_twice_gives_the_same_library) {
  auto a = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto b = load_ok(testing::test_plugin_dir() / "test_echo.so");
  BOOST_TEST(a.get() == b.get());
}

BOOST_AUTO_TEST_CASE(an_instance_is_called_through_the_c_abi) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto created = lib->create(map{{"label", "bench"}});
  BOOST_TEST_REQUIRE(created.ok());
  auto& d = **created;
  BOOST_TEST(invoke(d, *lib, "add", {2, 3}).as_int() == 5);
  BOOST_TEST(invoke(d, *lib, "label", {}).as_string() == "bench");
  BOOST_TEST(invoke(d, *lib, "sum", {typed_array::from(std::vector<double>{1, 2, 3.5})}).as_float() == 6.5);
  BOOST_TEST(invoke(d, *lib, "sum", {list{1, 2.5}}).as_float() == 3.5);
  BOOST_TEST(invoke(d, *lib, "open_gate", {"g"}).is_null());
}

BOOST_AUTO_TEST_CASE(argument_types_that_do_not_fit_name_the_parameter) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto d = std::move(*lib->create(map{}));
  try {
    invoke(*d, *lib, "add", {1, "two"});
    BOOST_FAIL("no error");
  } catch (const remote_error& e) {
    BOOST_TEST((e.code() == errc::bad_arguments));
    BOOST_TEST(e.message() == "parameter 'b': expected int64, got string");
  }
  try {
    invoke(*d, *lib, "sum", {typed_array::from(std::vector<std::int32_t>{1})});
    BOOST_FAIL("no error");
  } catch (const remote_error& e) {
    BOOST_TEST(e.message() == "parameter 'values': expected array<float64>, got array<int32>");
  }
}

BOOST_AUTO_TEST_CASE(driver_exceptions_become_driver_error_with_the_message) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto d = std::move(*lib->create(map{}));
  try {
    invoke(*d, *lib, "fail", {"shutter jammed"});
    BOOST_FAIL("no error");
  } catch (const remote_error& e) {
    BOOST_TEST((e.code() == errc::driver_error));
    BOOST_TEST(e.message() == "shutter jammed");
  }
  try {
    invoke(*d, *lib, "fail_unknown", {});
    BOOST_FAIL("no error");
  } catch (const remote_error& e) {
    BOOST_TEST((e.code() == errc::driver_error));
  }
  BOOST_TEST(invoke(*d, *lib, "add", {1, 1}).as_int() == 2);  // the instance still works
}

BOOST_AUTO_TEST_CASE(a_result_over_the_limit_is_refused) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto d = std::move(*lib->create(map{}));
  protocol::frame_buffer out;
  auto failure = d->invoke(static_cast<std::uint32_t>(lib->method_index("ramp")), encode(list{100000}), out, 1000);
  BOOST_TEST_REQUIRE(failure.has_value());
  BOOST_TEST((failure->code == errc::driver_error));
}

BOOST_AUTO_TEST_CASE(a_result_the_host_has_no_memory_for_is_refused_not_thrown_into_the_driver) {
  if (testing::sanitizer_build) {
    BOOST_TEST_MESSAGE("not run under a sanitizer: no address-space limit can be set there");
    return;
  }
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto d = std::move(*lib->create(map{}));
  // An address-space limit that a 3 GiB block cannot fit under: its allocation throws
  // std::bad_alloc inside the host's reserve callback, with the driver's frames on the stack.
  rlimit before{};
  BOOST_TEST_REQUIRE(::getrlimit(RLIMIT_AS, &before) == 0);
  rlimit limited = before;
  limited.rlim_cur = std::size_t{2} << 30;
  BOOST_TEST_REQUIRE(::setrlimit(RLIMIT_AS, &limited) == 0);
  protocol::frame_buffer out;
  auto failure = d->invoke(static_cast<std::uint32_t>(lib->method_index("ramp_in_place")),
                           encode(list{std::int64_t{3} << 29}), out, std::numeric_limits<std::size_t>::max());
  BOOST_TEST_REQUIRE(::setrlimit(RLIMIT_AS, &before) == 0);
  BOOST_TEST_REQUIRE(failure.has_value());
  BOOST_TEST((failure->code == errc::driver_error));
  BOOST_TEST(failure->message == "result refused by the host (too large?)");
  BOOST_TEST(invoke(*d, *lib, "add", {2, 2}).as_int() == 4);  // the instance goes on
}

BOOST_AUTO_TEST_CASE(an_array_result_is_written_in_place_or_refused_over_the_limit) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  auto d = std::move(*lib->create(map{}));
  BOOST_TEST(lib->info().methods.at(static_cast<std::size_t>(lib->method_index("ramp_in_place"))).returns ==
             "array<uint16>");
  protocol::frame_buffer out;
  auto failure =
      d->invoke(static_cast<std::uint32_t>(lib->method_index("ramp_in_place")), encode(list{100000}), out, 1 << 20);
  BOOST_TEST_REQUIRE(!failure.has_value());
  BOOST_TEST(out.head().size() == 6u);                 // the array's prefix, written with write()
  BOOST_TEST(out.tail().size() == 200000u);            // the elements, written where they are sent from
  auto ramp = decode(out.contiguous()).decoded.as_array();
  BOOST_TEST_REQUIRE(ramp.count() == 100000u);
  bool all_right = true;
  for (std::size_t i = 0; i < ramp.count(); ++i) all_right = all_right && ramp.at<std::uint16_t>(i) == (i & 0xFFFF);
  BOOST_TEST(all_right);

  protocol::frame_buffer small;
  failure = d->invoke(static_cast<std::uint32_t>(lib->method_index("ramp_in_place")), encode(list{100000}), small, 1000);
  BOOST_TEST_REQUIRE(failure.has_value());
  BOOST_TEST((failure->code == errc::driver_error));
  BOOST_TEST(failure->message == "result refused by the host (too large?)");
  BOOST_TEST(small.size() == 0u);  // nothing of the refused result is left

  protocol::frame_buffer thrown;
  failure = d->invoke(static_cast<std::uint32_t>(lib->method_index("fail_in_place")), encode(list{}), thrown, 1 << 20);
  BOOST_TEST_REQUIRE(failure.has_value());
  BOOST_TEST((failure->code == errc::driver_error));
  BOOST_TEST(failure->message == "sensor lost while reading out");
}

BOOST_AUTO_TEST_CASE(an_array_result_falls_back_to_write_when_the_host_lends_no_memory) {
  // A host that offers no reserve (NULL, as for messages): the SDK fills a buffer of its own.
  auto lib = load_ok(testing::test_plugin_dir() / "test_echo.so");
  const auto& descriptor = lib->descriptor();
  auto params = encode(map{});
  void* instance = nullptr;
  BOOST_TEST_REQUIRE(descriptor.create(params.data(), params.size(), &instance, nullptr) == LABHOST_OK);
  std::vector<std::uint8_t> written;
  labhost_output output{&written,
                        [](void* context, const std::uint8_t* data, std::size_t size) {
                          auto* bytes = static_cast<std::vector<std::uint8_t>*>(context);
                          bytes->insert(bytes->end(), data, data + size);
                          return 0;
                        },
                        nullptr};
  auto args = encode(list{70000});
  int status = descriptor.invoke(instance, static_cast<std::uint32_t>(lib->method_index("ramp_in_place")),
                                 args.data(), args.size(), &output);
  descriptor.destroy(instance);
  BOOST_TEST_REQUIRE(status == LABHOST_OK);
  auto ramp = decode(written).decoded.as_array();
  BOOST_TEST_REQUIRE(ramp.count() == 70000u);
  BOOST_TEST(ramp.at<std::uint16_t>(69999) == static_cast<std::uint16_t>(69999));
}

BOOST_AUTO_TEST_CASE(a_create_that_throws_is_reported) {
  auto lib = load_ok(testing::test_plugin_dir() / "test_create_throws.so");
  auto created = lib->create(map{});
  BOOST_TEST_REQUIRE(!created.ok());
  BOOST_TEST((created.err().code == errc::driver_error));
  BOOST_TEST(created.err().message == "test_create_throws: instrument not found on /dev/ttyUSB9");
}

BOOST_AUTO_TEST_CASE(another_abi_major_is_refused) {
  auto e = load_refused(testing::test_plugin_dir() / "test_abi_major2.so");
  BOOST_TEST((e.failure == load_failure::incompatible_abi));
  BOOST_TEST(e.message == "test_abi_major2.so: ABI 2.0, this host speaks 1.2");
}

BOOST_AUTO_TEST_CASE(a_newer_abi_minor_is_refused_and_an_older_one_is_accepted) {
  auto e = load_refused(testing::test_plugin_dir() / "test_abi_newer_minor.so");
  BOOST_TEST((e.failure == load_failure::newer_abi_minor));
  BOOST_TEST(e.message == "test_abi_newer_minor.so: ABI 1.5 is newer than this host's 1.2");
  // A driver built for ABI 1.0 (a labhost_output without reserve) loads and is called.
  auto older = load_ok(testing::test_plugin_dir() / "test_abi_older_minor.so");
  BOOST_TEST(older->info().name == "test_abi_older_minor");
  BOOST_TEST(older->info().abi_version == 0x10000u);
  auto instance = older->create(map{});
  BOOST_TEST_REQUIRE(instance.ok());
  BOOST_TEST(invoke(**instance, *older, "answer", {}).as_int() == 42);
}

BOOST_AUTO_TEST_CASE(a_library_without_the_entry_symbol_is_refused) {
  auto e = load_refused(testing::test_plugin_dir() / "test_no_entry.so");
  BOOST_TEST((e.failure == load_failure::no_entry_symbol));
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_library_is_refused) {
  testing::temp_dir dir;
  auto text = dir.path() / "notes.so";
  std::ofstream(text) << "this is not a shared object\n";
  BOOST_TEST((load_refused(text).failure == load_failure::not_a_library));
  // An ELF header alone does not make a loadable library.
  auto fake = dir.path() / "fake.so";
  std::ofstream(fake) << "\x7f" "ELF garbage";
  BOOST_TEST((load_refused(fake).failure == load_failure::not_a_library));
  BOOST_TEST((load_refused(dir.path() / "missing.so").failure == load_failure::not_found));
}

BOOST_AUTO_TEST_CASE(labhost_plugins_lists_every_file_with_its_status) {
  testing::temp_dir dir;
  for (auto name : {"test_echo.so", "test_abi_major2.so", "test_no_entry.so"})
    std::filesystem::copy_file(testing::test_plugin_dir() / name, dir.path() / name);
  std::ofstream(dir.path() / "broken.so") << "not a library";
  auto r = testing::run({(testing::bin_dir() / "labhost").string(), "plugins", "--dir", dir.path().string(), "--json"});
  BOOST_TEST(r.status == 1);  // some files are refused
  BOOST_TEST(r.out.find(R"("file":"test_echo.so","status":"ok","name":"test_echo")") != std::string::npos, r.out);
  BOOST_TEST(r.out.find(R"("file":"test_abi_major2.so","status":"refused","failure":"incompatible_abi")") != std::string::npos, r.out);
  BOOST_TEST(r.out.find(R"("file":"test_no_entry.so","status":"refused","failure":"no_entry_symbol")") != std::string::npos, r.out);
  BOOST_TEST(r.out.find(R"("file":"broken.so","status":"refused","failure":"not_a_library")") != std::string::npos, r.out);
  BOOST_TEST(r.out.find(R"("name":"add","params":[{"name":"a","type":"int64"})") != std::string::npos, r.out);

  auto human = testing::run({(testing::bin_dir() / "labhost").string(), "plugins", "--dir", testing::plugin_dir().string()});
  BOOST_TEST(human.status == 0, human.err);
  BOOST_TEST(human.out.find("sim_laser.so: sim_laser 1.0.0 (labhost), ABI 1.2") != std::string::npos, human.out);
  BOOST_TEST(human.out.find("set_wavelength(nm: float64) -> null") != std::string::npos, human.out);
}
