// bench_cases.h: the six cases of the benchmark (docs/performance.md), each measured on a
// labhost daemon and, where there is one, on the raw floor in the same run.
//
// Each case function takes the ports of what it measures and fills its part of
// bench_results. They run one at a time from the main thread; some start threads of their
// own and join them before returning.
#ifndef LABHOST_BENCH_BENCH_CASES_H
#define LABHOST_BENCH_BENCH_CASES_H

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "labhost/client.h"

namespace labhost::bench {

/// How long each case runs. plan::full() is the documented run; plan::quick() takes seconds.
struct bench_plan {
  bool quick = false;
  int seq_calls = 0;  // per side, split into rounds alternating labhost and floor
  int par_clients = 8;
  int par_calls = 0;   // per client and round
  int bulk_grabs = 0;  // per side
  int connects = 0;    // per side
  int idle_conns = 0;
  std::chrono::milliseconds idle_window{0};  // the small call is timed this long meanwhile
  int startup_runs = 0;
  std::chrono::milliseconds stream_window{0};  // each stream measurement runs this long
  int rounds = 5;
  client_options client;  // the labhost side's clients (busy_poll follows --busy-poll-us)

  static bench_plan full();
  static bench_plan quick_plan();
};

/// Frame sizes (header included) of labhost's messages, measured on the daemon with a raw
/// socket; the floor exchanges messages of exactly these sizes.
struct frame_sizes {
  std::size_t hello = 0;
  std::size_t welcome = 0;
  std::size_t call = 0;         // laser.wavelength()
  std::size_t result = 0;       // its float64 result
  std::size_t grab_call = 0;    // camera.grab()
  std::size_t grab_result = 0;  // 2048 x 2048 uint16
};

struct bench_results {
  frame_sizes sizes;
  // 1. one client, sequential small calls
  double seq_rtt_us = 0, seq_rtt_p99_us = 0, seq_rtt_floor_us = 0, seq_rtt_floor_p99_us = 0;
  double seq_ping_us = 0;  // labhost's ping (no service, no driver): the transport alone
  double seq_rtt_floor_one_cpu_us = 0;  // the floor with both ends kept on one CPU
  // 2. parallel clients, each sequential
  double par_calls_s = 0, par_floor_calls_s = 0;
  // 3. 8 MiB typed array
  double bulk_MBps = 0, bulk_floor_MBps = 0, bulk_driver_ms = 0;
  // 4. connect + hello + first call
  double connect_us = 0, connect_floor_us = 0;
  // 5. idle connections
  int idle_conns = 0, idle_threads = 0, idle_base_threads = 0;
  double idle_rss_MiB = 0, idle_base_rss_MiB = 0, idle_rtt_us = 0, idle_open_ms = 0;
  // 6. labhost up
  double startup_ms = 0;
  int startup_services = 0;
  // 7. frames streamed to subscribers (camera "frames" topic)
  double stream_fps = 0, stream_MBps = 0, stream_floor_MBps = 0;  // one subscriber
  double stream_shared_fps = 0;            // each of 3 subscribers, alone
  double stream_shared_stalled_fps = 0;    // each of the same 3, with a 4th that stopped reading
  double stream_stalled_ratio = 0;         // median over the rounds of (beside the 4th / alone)
  double stream_stalled_rss_growth_MiB = 0;  // the daemon's, while the 4th did not read
};

/// Progress lines for a person watching (stderr); may be a no-op.
using progress_fn = std::function<void(const std::string&)>;

frame_sizes probe_frame_sizes(std::uint16_t daemon_port);

/// `one_cpu_floor_port`: a floor server kept on CPU `one_cpu`, timed from a thread kept there
/// too (seq_rtt_floor_one_cpu_us).
void run_sequential(std::uint16_t daemon_port, std::uint16_t floor_port, std::uint16_t one_cpu_floor_port, int one_cpu,
                    const bench_plan& plan, bench_results& r);
void run_parallel(std::uint16_t daemon_port, std::uint16_t floor_port, const bench_plan& plan,
                  bench_results& r);
/// Also times the camera driver's own grab() in this process (bulk_driver_ms): the part of a
/// grab that is the simulated instrument, not the transport.
void run_bulk(std::uint16_t daemon_port, std::uint16_t floor_port, const std::filesystem::path& plugins,
              const bench_plan& plan, bench_results& r);
/// `floor_port`: an iterative floor server (no thread per connection to start).
void run_connect(std::uint16_t daemon_port, std::uint16_t floor_port, const bench_plan& plan,
                 bench_results& r);
void run_idle(std::uint16_t daemon_port, pid_t daemon_pid, const bench_plan& plan, bench_results& r,
              const progress_fn& progress);
/// Frames of the streaming camera: to one subscriber (against the floor's 8 MiB round trip),
/// then to three subscribers, alone and with a fourth that subscribed and stopped reading.
void run_stream(std::uint16_t daemon_port, pid_t daemon_pid, std::uint16_t floor_port, const bench_plan& plan,
                bench_results& r);
/// `labhost up` on a copy of `host_json` (ports rewritten to free ones, plugin_dir absolute).
void run_startup(const std::filesystem::path& labhost, const std::filesystem::path& host_json,
                 const std::filesystem::path& plugins, const std::filesystem::path& folder,
                 const bench_plan& plan, bench_results& r);

}  // namespace labhost::bench

#endif  // LABHOST_BENCH_BENCH_CASES_H
