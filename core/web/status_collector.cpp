#include "status_collector.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "../logging/log.h"
#include "../protocol/json_value.h"
#include "../protocol/messages.h"

namespace labhost::web {

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::int64_t int_of(const value* v) { return v != nullptr && v->is_int() ? v->as_int() : 0; }
double number_of(const value* v) { return v != nullptr && v->is_number() ? v->as_number() : 0; }

std::int64_t error_total(const value& stats) {
  std::int64_t total = 0;
  if (const value* errors = stats.find("errors"); errors && errors->is_map())
    for (const auto& [name, n] : errors->as_map()) total += n.is_int() ? n.as_int() : 0;
  return total;
}

/// The 99th-percentile call duration, in ms, of the calls between two histograms: the upper
/// bound of the bucket that holds it (10 s and over counts as 10 s).
double p99_ms(const value& before, const value& now) {
  const value* b = before.find("duration_buckets");
  const value* n = now.find("duration_buckets");
  if (n == nullptr || !n->is_list()) return 0;
  std::vector<std::int64_t> delta(n->as_list().size());
  std::int64_t total = 0;
  for (std::size_t i = 0; i < delta.size(); ++i) {
    const std::int64_t was = b && b->is_list() && i < b->as_list().size() ? int_of(&b->as_list()[i]) : 0;
    delta[i] = std::max<std::int64_t>(0, int_of(&n->as_list()[i]) - was);
    total += delta[i];
  }
  if (total == 0) return 0;
  const auto wanted = static_cast<std::int64_t>(std::ceil(0.99 * static_cast<double>(total)));
  std::int64_t seen = 0;
  const auto& bounds = protocol::call_duration_bounds_s;
  for (std::size_t i = 0; i < delta.size(); ++i) {
    seen += delta[i];
    if (seen >= wanted) return 1000 * (i < bounds.size() ? bounds[i] : bounds.back());
  }
  return 1000 * bounds.back();
}

/// A Prometheus label value: backslash, quote and newline escaped.
std::string label(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number_text(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

}  // namespace

status_collector::status_collector(collector_settings settings) : settings_(std::move(settings)) {
  thread_ = std::thread([this] { loop(); });
}

status_collector::~status_collector() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void status_collector::set_processes(std::vector<process_view> processes) {
  std::lock_guard lock(mutex_);
  processes_ = std::move(processes);
}

void status_collector::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    try {
      collect();
    } catch (const std::exception& e) {
      LABHOST_LOG(warning) << "status page: collecting the daemons' figures failed: " << e.what();
    }
    lock.lock();
    wake_.wait_for(lock, settings_.refresh, [&] { return stopping_; });
  }
}

std::shared_ptr<client> status_collector::connection_to(const process_view& p) {
  auto& cached = connections_[p.address];
  if (cached) return cached;
  auto address = service_address::parse(p.address);
  if (address.host == "0.0.0.0") address.host = "127.0.0.1";
  if (address.host == "::") address.host = "::1";
  cached = client::connect(address.host, address.port, settings_.connection);
  return cached;
}

status_collector::daemon_view status_collector::ask(const process_view& p) {
  daemon_view view;
  try {
    auto c = connection_to(p);
    view.stats = c->daemon_stats();
    for (const auto& l : c->lock_status()) {
      if (!l.locked) continue;
      view.locks.push_back(map{{"service", l.service},
                               {"holder", l.holder_name},
                               {"pid", l.holder_pid},
                               {"address", l.holder_address},
                               {"since", l.since},
                               {"lease_left_ms", l.lease_left_ms}});
    }
    for (const auto& s : c->describe().services)
      view.services.push_back(map{{"name", s.name},
                                  {"state", s.state},
                                  {"reason", s.reason},
                                  {"driver", s.driver},
                                  {"driver_version", s.driver_version},
                                  {"description", s.description},
                                  {"calls_pending", s.calls_pending}});
  } catch (const remote_error& e) {
    connections_.erase(p.address);  // a daemon that restarted gets a new connection next time
    view.error = std::string(e.name()) + ": " + e.message();
  }
  return view;
}

void status_collector::collect() {
  std::lock_guard one_at_a_time(collect_mutex_);
  std::vector<process_view> processes;
  {
    std::lock_guard lock(mutex_);
    processes = processes_;
  }
  std::map<std::string, daemon_view> asked;
  for (const auto& p : processes)
    if (p.role == "daemon" && p.state == "running") asked[p.name] = ask(p);
  const double now = unix_now();

  std::lock_guard lock(mutex_);
  for (auto& [name, view] : asked) {
    const value* services = view.stats.find("services");
    if (services == nullptr || !services->is_map()) continue;
    for (const auto& [service, stats] : services->as_map()) {
      auto& h = histories_[name + "/" + service];
      const std::int64_t calls = int_of(stats.find("calls"));
      const std::int64_t before = int_of(h.last.find("calls"));
      // A daemon that restarted counts from zero again: no rate from that step.
      if (!h.last.is_null() && calls >= before && now > h.last_time) {
        sample s;
        s.time = now;
        const double seconds = now - h.last_time;
        const double new_calls = static_cast<double>(calls - before);
        s.calls_per_s = new_calls / seconds;
        s.errors_per_s = static_cast<double>(std::max<std::int64_t>(0, error_total(stats) - error_total(h.last))) / seconds;
        const double spent = number_of(stats.find("duration_s_sum")) - number_of(h.last.find("duration_s_sum"));
        s.mean_ms = new_calls > 0 ? 1000 * spent / new_calls : 0;
        s.p99_ms = p99_ms(h.last, stats);
        h.samples.push_back(s);
        while (h.samples.size() > settings_.history_points) h.samples.pop_front();
      }
      h.last = stats;
      h.last_time = now;
    }
  }
  // Processes that went (a reload removed them) take their figures with them.
  std::map<std::string, daemon_view> kept;
  for (const auto& p : processes) {
    if (auto it = asked.find(p.name); it != asked.end())
      kept[p.name] = std::move(it->second);
    else if (auto old = daemons_.find(p.name); old != daemons_.end())
      kept[p.name] = std::move(old->second);
  }
  daemons_ = std::move(kept);
  std::erase_if(histories_, [&](const auto& entry) {
    const auto daemon = entry.first.substr(0, entry.first.find('/'));
    return std::none_of(processes.begin(), processes.end(), [&](const auto& p) { return p.name == daemon; });
  });
}

std::string status_collector::status_json() const {
  std::lock_guard lock(mutex_);
  list processes;
  for (const auto& p : processes_) {
    const double uptime = p.started > 0 ? std::max(0.0, unix_now() - p.started) : 0.0;
    map entry{{"name", p.name},       {"role", p.role}, {"address", p.address},
              {"state", p.state},     {"pid", p.pid},   {"restarts", p.restarts},
              {"uptime_s", uptime},   {"last_error", p.last_error}};
    list services;
    if (auto it = daemons_.find(p.name); it != daemons_.end()) {
      const daemon_view& d = it->second;
      entry.emplace_back("error", d.error);
      entry.emplace_back("connections", int_of(d.stats.find("connections")));
      entry.emplace_back("sessions", int_of(d.stats.find("sessions")));
      const value* recent = d.stats.find("recent_errors");
      entry.emplace_back("recent_errors", recent ? *recent : value(list{}));
      for (const auto& described : d.services) {
        const std::string name = described.find("name")->as_string();
        map s = described.as_map();
        value held = nullptr;
        for (const auto& l : d.locks)
          if (l.find("service")->as_string() == name) held = l;
        s.emplace_back("lock", std::move(held));
        const value* stats = d.stats.find("services") ? d.stats.find("services")->find(name) : nullptr;
        s.emplace_back("calls", int_of(stats ? stats->find("calls") : nullptr));
        s.emplace_back("errors", stats && stats->find("errors") ? *stats->find("errors") : value(map{}));
        s.emplace_back("lock_waits", int_of(stats ? stats->find("lock_waits") : nullptr));
        s.emplace_back("events_delivered", int_of(stats ? stats->find("events_delivered") : nullptr));
        s.emplace_back("events_dropped", int_of(stats ? stats->find("events_dropped") : nullptr));
        list t, rate, errors, mean, p99;
        if (auto h = histories_.find(p.name + "/" + name); h != histories_.end()) {
          for (const auto& point : h->second.samples) {
            t.emplace_back(point.time);
            rate.emplace_back(point.calls_per_s);
            errors.emplace_back(point.errors_per_s);
            mean.emplace_back(point.mean_ms);
            p99.emplace_back(point.p99_ms);
          }
        }
        const double last_rate = rate.empty() ? 0.0 : rate.back().as_float();
        const double last_mean = mean.empty() ? 0.0 : mean.back().as_float();
        s.emplace_back("calls_per_s", last_rate);
        s.emplace_back("mean_ms", last_mean);
        s.emplace_back("history", map{{"t", std::move(t)},
                                      {"calls_per_s", std::move(rate)},
                                      {"errors_per_s", std::move(errors)},
                                      {"mean_ms", std::move(mean)},
                                      {"p99_ms", std::move(p99)}});
        services.push_back(std::move(s));
      }
    }
    entry.emplace_back("services", std::move(services));
    processes.push_back(std::move(entry));
  }
  return protocol::to_json_text(map{{"host", settings_.host_name},
                                    {"time", unix_now()},
                                    {"refresh_s", std::chrono::duration<double>(settings_.refresh).count()},
                                    {"processes", std::move(processes)}});
}

std::string status_collector::metrics_text() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  auto help = [&](const char* name, const char* type, const char* text) {
    out << "# HELP " << name << " " << text << "\n# TYPE " << name << " " << type << "\n";
  };
  help("labhost_up", "gauge", "1 while the process runs and serves, else 0.");
  for (const auto& p : processes_)
    out << "labhost_up{process=\"" << label(p.name) << "\",role=\"" << label(p.role) << "\"} "
        << (p.state == "running" ? 1 : 0) << "\n";
  help("labhost_restarts_total", "counter", "Times labhost up started the process again.");
  for (const auto& p : processes_) out << "labhost_restarts_total{process=\"" << label(p.name) << "\"} " << p.restarts << "\n";

  // One series per daemon and service, from the daemons' own counters.
  struct series {
    const char* name;
    const char* type;
    const char* help;
    const char* key;
    bool seconds = false;
  };
  const series counters[] = {
      {"labhost_calls_total", "counter", "Calls answered.", "calls"},
      {"labhost_lock_waits_total", "counter", "Lock requests that waited for another session's lock.", "lock_waits"},
      {"labhost_lock_wait_seconds_total", "counter", "Time lock requests waited.", "lock_wait_s_sum", true},
      {"labhost_received_bytes_total", "counter", "Request payload bytes of calls.", "bytes_in"},
      {"labhost_sent_bytes_total", "counter", "Reply payload bytes of calls.", "bytes_out"},
      {"labhost_events_delivered_total", "counter", "Events written to subscribers.", "events_delivered"},
      {"labhost_events_dropped_total", "counter", "Events dropped for subscribers that fell behind.", "events_dropped"},
  };
  auto each_service = [&](auto&& body) {
    for (const auto& [daemon, view] : daemons_) {
      const value* services = view.stats.find("services");
      if (services == nullptr || !services->is_map()) continue;
      for (const auto& [service, stats] : services->as_map())
        body("daemon=\"" + label(daemon) + "\",service=\"" + label(service) + "\"", stats);
    }
  };
  for (const auto& c : counters) {
    help(c.name, c.type, c.help);
    each_service([&](const std::string& labels, const value& stats) {
      const value* v = stats.find(c.key);
      out << c.name << "{" << labels << "} " << (c.seconds ? number_text(number_of(v)) : std::to_string(int_of(v)))
          << "\n";
    });
  }
  help("labhost_call_errors_total", "counter", "Calls answered with an error, by error name.");
  each_service([&](const std::string& labels, const value& stats) {
    if (const value* errors = stats.find("errors"); errors && errors->is_map())
      for (const auto& [name, n] : errors->as_map())
        out << "labhost_call_errors_total{" << labels << ",error=\"" << label(name) << "\"} " << int_of(&n) << "\n";
  });
  help("labhost_call_duration_seconds", "histogram", "How long calls took in the driver.");
  each_service([&](const std::string& labels, const value& stats) {
    const value* buckets = stats.find("duration_buckets");
    std::int64_t cumulative = 0;
    const auto& bounds = protocol::call_duration_bounds_s;
    if (buckets && buckets->is_list())
      for (std::size_t i = 0; i < buckets->as_list().size(); ++i) {
        cumulative += int_of(&buckets->as_list()[i]);
        out << "labhost_call_duration_seconds_bucket{" << labels << ",le=\""
            << (i < bounds.size() ? number_text(bounds[i]) : "+Inf") << "\"} " << cumulative << "\n";
      }
    out << "labhost_call_duration_seconds_sum{" << labels << "} " << number_text(number_of(stats.find("duration_s_sum")))
        << "\n";
    out << "labhost_call_duration_seconds_count{" << labels << "} " << cumulative << "\n";
  });
  help("labhost_connections", "gauge", "Client connections open on the daemon.");
  for (const auto& [daemon, view] : daemons_)
    if (view.error.empty())
      out << "labhost_connections{daemon=\"" << label(daemon) << "\"} " << int_of(view.stats.find("connections")) << "\n";
  help("labhost_sessions", "gauge", "Client sessions of the daemon.");
  for (const auto& [daemon, view] : daemons_)
    if (view.error.empty())
      out << "labhost_sessions{daemon=\"" << label(daemon) << "\"} " << int_of(view.stats.find("sessions")) << "\n";
  help("labhost_service_locked", "gauge", "1 while a session holds the service's lock.");
  for (const auto& [daemon, view] : daemons_)
    for (const auto& s : view.services) {
      const std::string name = s.find("name")->as_string();
      const bool locked = std::any_of(view.locks.begin(), view.locks.end(),
                                      [&](const value& l) { return l.find("service")->as_string() == name; });
      out << "labhost_service_locked{daemon=\"" << label(daemon) << "\",service=\"" << label(name) << "\"} "
          << (locked ? 1 : 0) << "\n";
    }
  return out.str();
}

}  // namespace labhost::web
