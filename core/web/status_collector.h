// status_collector.h: what the status page and /metrics of `labhost up` show, gathered by
// asking every running daemon of the host for its figures (client::daemon_stats) and its locks,
// once per refresh (host.json http.refresh_s), on a thread of its own.
//
// From the daemons' counters it keeps, per service, the last history_points rates (calls and
// errors per second, mean and 99th-percentile call duration) for the page's plots. The
// supervisor hands it its view of the processes (set_processes) whenever that changes.
// Thread-safety: every member is safe from any thread; the JSON and metrics are built under
// mutex_ from the last collection.
#ifndef LABHOST_WEB_STATUS_COLLECTOR_H
#define LABHOST_WEB_STATUS_COLLECTOR_H

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "labhost/client.h"
#include "labhost/value.h"

namespace labhost::web {

/// One process of the host, as the supervisor sees it.
struct process_view {
  std::string name;
  std::string role;  // "daemon" or "nameserver"
  std::string address;
  std::string state;  // starting, running, backoff, crash_loop, stopping, stopped
  std::int64_t pid = 0;
  std::int64_t restarts = 0;
  double started = 0;  // Unix seconds; 0 while it does not run
  std::string last_error;
};

struct collector_settings {
  std::string host_name;                      // shown in the page's title
  client_options connection;                  // how to reach the host's daemons (secret, TLS)
  std::chrono::milliseconds refresh{1000};    // how often the daemons are asked
  std::size_t history_points = 120;           // points kept per plot
};

class status_collector {
 public:
  explicit status_collector(collector_settings settings);
  ~status_collector();  // stops the thread
  status_collector(const status_collector&) = delete;
  status_collector& operator=(const status_collector&) = delete;

  void set_processes(std::vector<process_view> processes);
  /// Collects once now (also done by the thread every refresh): for tests and the first page.
  void collect();

  /// The page's data: processes, their services with states, locks, rates and plots, the
  /// recent errors (docs/operations.md, "The status page").
  std::string status_json() const;
  /// Prometheus text exposition format 0.0.4.
  std::string metrics_text() const;

 private:
  struct sample {
    double time = 0;  // Unix seconds
    double calls_per_s = 0;
    double errors_per_s = 0;
    double mean_ms = 0;
    double p99_ms = 0;
  };
  struct service_history {
    value last;  // the daemon's counters at the last collection
    double last_time = 0;
    std::deque<sample> samples;
  };
  struct daemon_view {
    std::string error;    // why it could not be asked, if it could not
    value stats;          // its figures, as last collected
    list locks;           // lock reports
    list services;        // describe()'s services
  };

  void loop();
  /// One daemon's figures, locks and services; throws remote_error.
  daemon_view ask(const process_view& p);
  std::shared_ptr<client> connection_to(const process_view& p);

  const collector_settings settings_;

  mutable std::mutex mutex_;  // guards everything below but connections_; with wake_
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<process_view> processes_;
  std::map<std::string, daemon_view> daemons_;                  // by daemon name
  std::map<std::string, service_history> histories_;           // by "daemon/service"
  std::mutex collect_mutex_;  // one collect() at a time; guards connections_
  std::map<std::string, std::shared_ptr<client>> connections_;  // by address
  std::thread thread_;
};

}  // namespace labhost::web

#endif  // LABHOST_WEB_STATUS_COLLECTOR_H
