#include "bench_cases.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <exception>
#include <future>
#include <fstream>
#include <latch>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench_daemon.h"
#include "child_process.h"
#include "host/host_config.h"
#include "labhost/client.h"
#include "labhost/value_codec.h"
#include "plugin/plugin_library.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "raw_socket.h"
#include "stats.h"

namespace labhost::bench {

namespace json = boost::json;
using clock_type = std::chrono::steady_clock;
using protocol::message_type;

bench_plan bench_plan::full() {
  bench_plan p;
  p.seq_calls = 20'000;
  p.par_calls = 4'000;
  p.bulk_grabs = 100;
  p.connects = 1'000;
  p.idle_conns = 1'000;
  p.idle_window = std::chrono::milliseconds(3'000);
  p.startup_runs = 5;
  p.stream_window = std::chrono::milliseconds(1'000);
  p.rounds = 5;
  return p;
}

bench_plan bench_plan::quick_plan() {
  bench_plan p;
  p.quick = true;
  p.seq_calls = 2'000;
  p.par_calls = 300;
  p.bulk_grabs = 10;
  p.connects = 100;
  p.idle_conns = 100;
  p.idle_window = std::chrono::milliseconds(300);
  p.startup_runs = 1;
  p.stream_window = std::chrono::milliseconds(200);
  p.rounds = 2;
  return p;
}

namespace {

double microseconds(clock_type::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }


/// Sends one frame and reads the reply frame; its size, header included.
std::size_t exchange(int fd, const std::vector<std::uint8_t>& frame, message_type expected) {
  send_all(fd, frame.data(), frame.size());
  std::array<std::uint8_t, protocol::header_size> header_bytes;
  if (!recv_all(fd, header_bytes.data(), header_bytes.size()))
    throw std::runtime_error("the daemon closed the connection");
  auto header = protocol::parse_header(header_bytes, limits::default_max_frame_bytes);
  if (!header) throw std::runtime_error("bad reply header: " + header.err().to_string());
  std::vector<std::uint8_t> payload(header->payload_size);
  if (!recv_all(fd, payload.data(), payload.size()))
    throw std::runtime_error("the daemon closed the connection");
  if (header->type != expected)
    throw std::runtime_error("expected a " + std::string(protocol::message_type_name(expected)) +
                             " reply, got " + std::string(protocol::message_type_name(header->type)));
  return protocol::header_size + payload.size();
}

std::vector<std::uint8_t> call_frame(std::uint32_t id, const std::string& service,
                                     const std::string& method) {
  return protocol::encode_frame(message_type::call, id,
                                protocol::to_value(protocol::call_message{service, method, {}, {}}));
}

/// Runs `call_of[i]()` `calls` times on thread i, all threads released together; total calls
/// per second from the release to the last thread's end.
double parallel_rate(const std::vector<std::function<void()>>& call_of, int calls) {
  const auto n = static_cast<std::ptrdiff_t>(call_of.size());
  std::latch ready(n);
  std::latch go(1);
  std::vector<std::exception_ptr> failures(call_of.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < call_of.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        for (int k = 0; k < 50; ++k) call_of[i]();  // warm-up
      } catch (...) {
        failures[i] = std::current_exception();
      }
      ready.count_down();
      go.wait();
      if (failures[i]) return;
      try {
        for (int k = 0; k < calls; ++k) call_of[i]();
      } catch (...) {
        failures[i] = std::current_exception();
      }
    });
  }
  ready.wait();
  auto start = clock_type::now();
  go.count_down();
  for (auto& t : threads) t.join();
  auto elapsed = clock_type::now() - start;
  for (auto& f : failures)
    if (f) std::rethrow_exception(f);
  return static_cast<double>(n) * calls / std::chrono::duration<double>(elapsed).count();
}

void check_wavelength(const value& v) {
  if (!v.is_float()) throw std::runtime_error("laser.wavelength() did not return a float");
}

constexpr std::size_t grab_bytes = 2048u * 2048u * 2u;

void check_frame(const value& v) {
  if (!v.is_array() || v.as_array().data.size() != grab_bytes)
    throw std::runtime_error("camera.grab() did not return 2048 x 2048 uint16");
}

}  // namespace

frame_sizes probe_frame_sizes(std::uint16_t daemon_port) {
  auto fd = connect_loopback(daemon_port);
  frame_sizes s;
  protocol::hello_message hello;
  hello.client_name = labhost::default_client_name();  // the size a default client's hello has
  hello.pid = ::getpid();
  auto hello_frame = protocol::encode_frame(message_type::hello, 1, protocol::to_value(hello));
  s.hello = hello_frame.size();
  s.welcome = exchange(fd.get(), hello_frame, message_type::welcome);
  auto call = call_frame(2, "laser", "wavelength");
  s.call = call.size();
  s.result = exchange(fd.get(), call, message_type::result);
  auto grab = call_frame(3, "camera", "grab");
  s.grab_call = grab.size();
  s.grab_result = exchange(fd.get(), grab, message_type::result);
  auto goodbye = protocol::encode_frame(message_type::goodbye, 0, nullptr);
  send_all(fd.get(), goodbye.data(), goodbye.size());
  return s;
}

void run_sequential(std::uint16_t daemon_port, std::uint16_t floor_port, std::uint16_t one_cpu_floor_port, int one_cpu,
                    const bench_plan& plan, bench_results& r) {
  service_proxy laser(client::connect("127.0.0.1", daemon_port, plan.client), "laser");
  floor_client floor(floor_port, r.sizes.call, r.sizes.result);
  for (int i = 0; i < 500; ++i) {
    check_wavelength(laser.call("wavelength"));
    floor.round_trip();
  }
  std::vector<double> labhost_us, floor_us;
  const int per_round = std::max(1, plan.seq_calls / plan.rounds);
  // Alternating rounds: a drift of the machine (another process, frequency) hits both sides.
  for (int round = 0; round < plan.rounds; ++round) {
    for (int i = 0; i < per_round; ++i) {
      auto start = clock_type::now();
      value v = laser.call("wavelength");
      labhost_us.push_back(microseconds(clock_type::now() - start));
      check_wavelength(v);
    }
    for (int i = 0; i < per_round; ++i) {
      auto start = clock_type::now();
      floor.round_trip();
      floor_us.push_back(microseconds(clock_type::now() - start));
    }
  }
  std::vector<double> ping_us;
  for (int i = 0; i < per_round; ++i) {
    auto start = clock_type::now();
    laser.connection().ping();
    ping_us.push_back(microseconds(clock_type::now() - start));
  }
  r.seq_ping_us = percentile(ping_us, 0.5);

  // The floor's other state: a blocking round trip costs much less when the scheduler keeps
  // both ends on one CPU (no wakeup of another CPU) than when it puts them on two; which one
  // the floor above got is up to the scheduler. Here both ends are kept on one CPU.
  std::vector<double> one_cpu_us;
  std::exception_ptr failure;
  std::thread([&] {
    try {
      pin_to_cpu(one_cpu);
      floor_client pinned(one_cpu_floor_port, r.sizes.call, r.sizes.result);
      for (int i = 0; i < 500; ++i) pinned.round_trip();
      for (int i = 0; i < per_round; ++i) {
        auto start = clock_type::now();
        pinned.round_trip();
        one_cpu_us.push_back(microseconds(clock_type::now() - start));
      }
    } catch (...) {
      failure = std::current_exception();
    }
  }).join();
  if (failure) std::rethrow_exception(failure);
  r.seq_rtt_floor_one_cpu_us = percentile(one_cpu_us, 0.5);
  r.seq_rtt_us = percentile(labhost_us, 0.5);
  r.seq_rtt_p99_us = percentile(labhost_us, 0.99);
  r.seq_rtt_floor_us = percentile(floor_us, 0.5);
  r.seq_rtt_floor_p99_us = percentile(floor_us, 0.99);
}

void run_parallel(std::uint16_t daemon_port, std::uint16_t floor_port, const bench_plan& plan,
                  bench_results& r) {
  std::vector<service_proxy> lasers;
  std::vector<std::unique_ptr<floor_client>> floors;
  std::vector<std::function<void()>> labhost_calls, floor_calls;
  for (int i = 0; i < plan.par_clients; ++i) {
    lasers.emplace_back(client::connect("127.0.0.1", daemon_port, plan.client), "laser");
    floors.push_back(std::make_unique<floor_client>(floor_port, r.sizes.call, r.sizes.result));
  }
  for (int i = 0; i < plan.par_clients; ++i) {
    labhost_calls.push_back(
        [&lasers, i] { check_wavelength(lasers[static_cast<std::size_t>(i)].call("wavelength")); });
    floor_calls.push_back([&floors, i] { floors[static_cast<std::size_t>(i)]->round_trip(); });
  }
  std::vector<double> labhost_rates, floor_rates;
  for (int round = 0; round < plan.rounds; ++round) {
    labhost_rates.push_back(parallel_rate(labhost_calls, plan.par_calls));
    floor_rates.push_back(parallel_rate(floor_calls, plan.par_calls));
  }
  r.par_calls_s = percentile(labhost_rates, 0.5);
  r.par_floor_calls_s = percentile(floor_rates, 0.5);
}

void run_bulk(std::uint16_t daemon_port, std::uint16_t floor_port, const std::filesystem::path& plugins,
              const bench_plan& plan, bench_results& r) {
  service_proxy camera(client::connect("127.0.0.1", daemon_port, plan.client), "camera");
  floor_client floor(floor_port, r.sizes.grab_call, r.sizes.grab_result);
  for (int i = 0; i < 3; ++i) {
    check_frame(camera.call("grab"));
    floor.round_trip();
  }
  const int per_round = std::max(1, plan.bulk_grabs / plan.rounds);
  clock_type::duration labhost_time{}, floor_time{};
  for (int round = 0; round < plan.rounds; ++round) {
    auto start = clock_type::now();
    for (int i = 0; i < per_round; ++i) check_frame(camera.call("grab"));
    labhost_time += clock_type::now() - start;
    start = clock_type::now();
    for (int i = 0; i < per_round; ++i) floor.round_trip();
    floor_time += clock_type::now() - start;
  }
  const double megabytes = static_cast<double>(r.sizes.grab_result) * per_round * plan.rounds / 1e6;
  r.bulk_MBps = megabytes / std::chrono::duration<double>(labhost_time).count();
  r.bulk_floor_MBps = megabytes / std::chrono::duration<double>(floor_time).count();

  // The simulated camera's own work per grab (filling 8 MiB of pixels), measured on the
  // driver loaded in this process the way the daemon calls it: into a fresh frame buffer.
  auto loaded = plugin::plugin_library::load(host::plugin_file(plugins, "sim_camera"));
  if (!loaded) throw std::runtime_error("sim_camera: " + loaded.err().message);
  auto library = std::move(*loaded);
  auto instance = library->create(value(map{{"width", value(2048)}, {"height", value(2048)}}));
  if (!instance) throw std::runtime_error("sim_camera: " + instance.err().to_string());
  const int grab = library->method_index("grab");
  if (grab < 0) throw std::runtime_error("sim_camera has no grab()");
  const auto no_args = encode(value(list{}));
  std::vector<double> driver_ms;
  for (int i = 0; i < std::max(5, per_round); ++i) {
    auto start = clock_type::now();
    protocol::frame_buffer out(std::vector<std::uint8_t>(protocol::header_size));
    auto failure =
        (*instance)->invoke(static_cast<std::uint32_t>(grab), no_args, out, limits::default_max_frame_bytes);
    driver_ms.push_back(microseconds(clock_type::now() - start) / 1000.0);
    if (failure) throw std::runtime_error("sim_camera.grab(): " + failure->to_string());
  }
  r.bulk_driver_ms = percentile(driver_ms, 0.5);
}

namespace {

/// Frames one subscription receives within `window`, each checked (shape, and the pixels
/// that tell which frame it is).
int count_frames(subscription& frames, std::chrono::milliseconds window) {
  int received = 0;
  const auto until = clock_type::now() + window;
  while (clock_type::now() < until) {
    auto e = frames.next(std::chrono::milliseconds(1'000));
    if (!e) throw std::runtime_error("the streaming camera sent no frame for a second");
    const auto& a = e->data.as_array();
    // Pixel (y, x) of the n-th streamed frame is x + y + n mod 65536.
    if (a.shape.size() != 2 || a.count() != 2048u * 2048u ||
        a.at<std::uint16_t>(2048 + 3) != static_cast<std::uint16_t>(4 + e->seq))
      throw std::runtime_error("a streamed frame is not the camera's frame");
    frames.recycle(std::move(*e));  // as a viewer that shows a frame, then takes the next
    ++received;
  }
  return received;
}

/// One request on a raw connection and its reply's payload (decoded).
value raw_request(int fd, message_type type, std::uint32_t id, const value& payload) {
  const auto frame = protocol::encode_frame(type, id, payload);
  send_all(fd, frame.data(), frame.size());
  std::array<std::uint8_t, protocol::header_size> header_bytes;
  if (!recv_all(fd, header_bytes.data(), header_bytes.size())) throw std::runtime_error("the daemon closed");
  auto header = protocol::parse_header(header_bytes, limits::default_max_frame_bytes);
  if (!header) throw std::runtime_error("bad reply header: " + header.err().to_string());
  std::vector<std::uint8_t> reply(header->payload_size);
  if (!recv_all(fd, reply.data(), reply.size())) throw std::runtime_error("the daemon closed");
  auto decoded = protocol::decode_payload(reply);
  if (!decoded || header->type == message_type::error)
    throw std::runtime_error("the daemon refused a request of the stalled subscriber");
  return std::move(*decoded);
}

/// A connection that subscribes to a topic and then never reads again: a viewer whose
/// machine froze.
unique_fd stalled_subscriber(std::uint16_t port, const std::string& service, const std::string& topic) {
  unique_fd fd = connect_loopback(port);
  protocol::hello_message hello;
  hello.client_name = "stalled@bench";
  raw_request(fd.get(), message_type::hello, 1, protocol::to_value(hello));
  raw_request(fd.get(), message_type::subscribe, 2, protocol::to_value(protocol::subscribe_message{service, topic, 16, 0}));
  return fd;
}

/// Frames per second that each of `subscribers` receives over the window (the median).
double frames_per_second_each(std::vector<std::unique_ptr<subscription>>& subscribers,
                              std::chrono::milliseconds window) {
  std::vector<std::future<int>> counts;
  for (auto& s : subscribers)
    counts.push_back(std::async(std::launch::async, [&s, window] { return count_frames(*s, window); }));
  std::vector<double> rates;
  for (auto& c : counts) rates.push_back(c.get() / std::chrono::duration<double>(window).count());
  return percentile(rates, 0.5);
}

}  // namespace

void run_stream(std::uint16_t daemon_port, pid_t daemon_pid, std::uint16_t floor_port, const bench_plan& plan,
                bench_results& r) {
  subscribe_options options;
  options.queue = 2;  // a viewer wants the latest frames, not a backlog
  const double frame_mb = static_cast<double>(r.sizes.grab_result) / 1e6;
  floor_client floor(floor_port, r.sizes.grab_call, r.sizes.grab_result);
  {
    auto c = client::connect("127.0.0.1", daemon_port, plan.client);
    auto frames = c->subscribe("streaming_camera", "frames", options);
    count_frames(*frames, plan.stream_window / 4);  // warm up
    double frames_in = 0, seconds = 0, floor_mb = 0, floor_seconds = 0;
    for (int round = 0; round < plan.rounds; ++round) {
      frames_in += count_frames(*frames, plan.stream_window);
      seconds += std::chrono::duration<double>(plan.stream_window).count();
      frames->unsubscribe();  // the floor runs alone, as the stream did
      const auto start = clock_type::now();
      for (int i = 0; i < std::max(1, plan.bulk_grabs / plan.rounds); ++i) floor.round_trip();
      floor_seconds += std::chrono::duration<double>(clock_type::now() - start).count();
      floor_mb += frame_mb * std::max(1, plan.bulk_grabs / plan.rounds);
      frames = c->subscribe("streaming_camera", "frames", options);
    }
    r.stream_fps = frames_in / seconds;
    r.stream_MBps = r.stream_fps * frame_mb;
    r.stream_floor_MBps = floor_mb / floor_seconds;
  }
  // Three subscribers, alone, then with a fourth that subscribes and never reads again.
  std::vector<std::shared_ptr<client>> clients;
  std::vector<std::unique_ptr<subscription>> subscribers;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(client::connect("127.0.0.1", daemon_port, plan.client));
    subscribers.push_back(clients.back()->subscribe("streaming_camera", "frames", options));
  }
  frames_per_second_each(subscribers, plan.stream_window / 4);
  // Rounds in pairs (alone, then beside a stalled subscriber), so that both halves of a pair
  // see the same machine. The stalled one's queue fills within its first frames.
  std::vector<double> alone, beside_stalled, rss_growth;
  for (int round = 0; round < plan.rounds; ++round) {
    alone.push_back(frames_per_second_each(subscribers, plan.stream_window));
    const double rss_before = read_process_status(daemon_pid).rss_mib;
    unique_fd stalled = stalled_subscriber(daemon_port, "streaming_camera", "frames");
    beside_stalled.push_back(frames_per_second_each(subscribers, plan.stream_window));
    rss_growth.push_back(std::max(0.0, read_process_status(daemon_pid).rss_mib - rss_before));
  }  // each stalled connection closes here: its session, and what it held, go
  r.stream_stalled_rss_growth_MiB = *std::max_element(rss_growth.begin(), rss_growth.end());
  r.stream_shared_fps = percentile(alone, 0.5);
  r.stream_shared_stalled_fps = percentile(beside_stalled, 0.5);
  // The ratio of each pair, then their median: the two halves of a pair saw the same machine.
  std::vector<double> pair_ratios;
  for (std::size_t i = 0; i < alone.size(); ++i)
    if (alone[i] > 0) pair_ratios.push_back(beside_stalled[i] / alone[i]);
  r.stream_stalled_ratio = pair_ratios.empty() ? 0 : percentile(pair_ratios, 0.5);
}

void run_connect(std::uint16_t daemon_port, std::uint16_t floor_port, const bench_plan& plan,
                 bench_results& r) {
  auto labhost_once = [&] {
    auto start = clock_type::now();
    auto c = client::connect("127.0.0.1", daemon_port, plan.client);
    check_wavelength(c->call("laser", "wavelength"));
    auto elapsed = clock_type::now() - start;
    c.reset();  // goodbye and close, outside the timed part
    return microseconds(elapsed);
  };
  auto floor_once = [&] {
    auto start = clock_type::now();
    floor_client f(floor_port, r.sizes.hello, r.sizes.welcome);
    f.round_trip();
    f.set_sizes(r.sizes.call, r.sizes.result);
    f.round_trip();
    return microseconds(clock_type::now() - start);
  };
  for (int i = 0; i < 20; ++i) {
    labhost_once();
    floor_once();
  }
  std::vector<double> labhost_us, floor_us;
  const int per_round = std::max(1, plan.connects / plan.rounds);
  for (int round = 0; round < plan.rounds; ++round) {
    for (int i = 0; i < per_round; ++i) labhost_us.push_back(labhost_once());
    for (int i = 0; i < per_round; ++i) floor_us.push_back(floor_once());
  }
  r.connect_us = percentile(labhost_us, 0.5);
  r.connect_floor_us = percentile(floor_us, 0.5);
}

void run_idle(std::uint16_t daemon_port, pid_t daemon_pid, const bench_plan& plan, bench_results& r,
              const progress_fn& progress) {
  service_proxy laser(client::connect("127.0.0.1", daemon_port, plan.client), "laser");
  for (int i = 0; i < 200; ++i) check_wavelength(laser.call("wavelength"));
  auto base = read_process_status(daemon_pid);
  r.idle_base_threads = base.threads;
  r.idle_base_rss_MiB = base.rss_mib;

  // Real clients with the default options: each holds its connection and session, and its
  // heartbeat thread pings every third of the daemon's lease.
  std::vector<std::shared_ptr<client>> idle;
  idle.reserve(static_cast<std::size_t>(plan.idle_conns));
  auto open_start = clock_type::now();
  for (int i = 0; i < plan.idle_conns; ++i) idle.push_back(client::connect("127.0.0.1", daemon_port, plan.client));
  r.idle_open_ms = microseconds(clock_type::now() - open_start) / 1000.0;
  r.idle_conns = static_cast<int>(idle.size());
  progress(std::to_string(idle.size()) + " idle connections open; timing small calls meanwhile");

  auto peak = read_process_status(daemon_pid);
  std::vector<double> rtt_us;
  auto window_end = clock_type::now() + plan.idle_window;
  while (clock_type::now() < window_end) {
    for (int i = 0; i < 200; ++i) {
      auto start = clock_type::now();
      value v = laser.call("wavelength");
      rtt_us.push_back(microseconds(clock_type::now() - start));
      check_wavelength(v);
    }
    auto now = read_process_status(daemon_pid);  // between timed calls, not during one
    peak.threads = std::max(peak.threads, now.threads);
    peak.rss_mib = std::max(peak.rss_mib, now.rss_mib);
  }
  r.idle_threads = peak.threads;
  r.idle_rss_MiB = peak.rss_mib;
  r.idle_rtt_us = percentile(rtt_us, 0.5);
  idle.clear();  // each says goodbye
}

namespace {

struct startup_target {
  std::string host;
  std::uint16_t port = 0;
  std::vector<std::string> services;
};

/// Waits until the daemon answers and describes every service as ready. Polling is the
/// measurement here; the deadline bounds a daemon that never comes up.
void wait_until_serving(const startup_target& t, clock_type::time_point deadline) {
  client_options options;
  options.heartbeats = false;
  options.reconnect = false;
  options.connect_timeout = std::chrono::milliseconds(500);
  options.timeout = std::chrono::milliseconds(2000);
  std::string last_problem = "no answer";
  while (clock_type::now() < deadline) {
    try {
      auto c = client::connect(t.host, t.port, options);
      bool all_ready = true;
      for (const auto& s : t.services) {
        auto d = c->describe(s);
        if (d.state != "ready") {
          last_problem = s + " is " + d.state + " (" + d.reason + ")";
          all_ready = false;
          break;
        }
      }
      if (all_ready) return;
    } catch (const remote_error& e) {
      last_problem = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  throw std::runtime_error("labhost up: " + t.host + ":" + std::to_string(t.port) +
                           " did not serve in time: " + last_problem);
}

}  // namespace

void run_startup(const std::filesystem::path& labhost, const std::filesystem::path& host_json,
                 const std::filesystem::path& plugins, const std::filesystem::path& folder,
                 const bench_plan& plan, bench_results& r) {
  std::string text = read_text_file(host_json.string());
  if (text.empty()) throw std::runtime_error("cannot read " + host_json.string());
  json::parse_options options;
  options.allow_comments = true;
  options.allow_trailing_commas = true;
  const json::value original = json::parse(text, {}, options);

  std::vector<double> startup_ms;
  for (int run = 0; run < plan.startup_runs; ++run) {
    json::object config = original.as_object();
    config["plugin_dir"] = std::filesystem::absolute(plugins).string();
    // The nameserver and the status page move to free ports too: a host running on this
    // machine (make run) keeps its own.
    auto on_free_port = [](json::object& section, const char* key) {
      std::string address(section.at(key).as_string());
      section[key] = address.substr(0, address.rfind(':')) + ":" + std::to_string(free_port());
    };
    if (auto* ns = config.if_contains("nameserver"); ns && ns->is_object() && ns->as_object().contains("listen"))
      on_free_port(ns->as_object(), "listen");
    if (auto* http = config.if_contains("http"); http && http->is_object()) {
      if (!http->as_object().contains("listen")) http->as_object()["listen"] = "127.0.0.1:7780";
      on_free_port(http->as_object(), "listen");
    }
    config.erase("register_with");  // the daemons register with the moved nameserver
    std::vector<startup_target> targets;
    for (auto& [name, entry] : config.at("daemons").as_object()) {
      auto& daemon = entry.as_object();
      std::string address(daemon.at("address").as_string());
      startup_target t;
      t.host = address.substr(0, address.rfind(':'));
      t.port = free_port();
      daemon["address"] = t.host + ":" + std::to_string(t.port);
      if (t.host.starts_with("[")) t.host = t.host.substr(1, t.host.size() - 2);
      for (const auto& [service, unused] : daemon.at("services").as_object())
        t.services.emplace_back(service);
      targets.push_back(std::move(t));
    }
    auto config_file = folder / ("host-up-" + std::to_string(run) + ".json");
    {
      std::ofstream out(config_file);
      out << json::serialize(config) << "\n";
    }
    r.startup_services = 0;
    for (const auto& t : targets) r.startup_services += static_cast<int>(t.services.size());

    auto start = clock_type::now();
    child_process up({labhost.string(), "up", "--config", config_file.string()},
                     (folder / ("up-" + std::to_string(run) + ".log")).string());
    try {
      for (const auto& t : targets) wait_until_serving(t, start + std::chrono::seconds(10));
    } catch (const std::runtime_error& e) {
      up.stop(SIGTERM, std::chrono::seconds(20));
      throw std::runtime_error(std::string(e.what()) + "; its log:\n" +
                               read_text_file((folder / ("up-" + std::to_string(run) + ".log")).string()));
    }
    startup_ms.push_back(microseconds(clock_type::now() - start) / 1000.0);
    up.stop(SIGTERM, std::chrono::seconds(20));
  }
  r.startup_ms = percentile(startup_ms, 0.5);
}

}  // namespace labhost::bench
