#include "journal.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "../logging/log.h"
#include "../protocol/json_value.h"

namespace labhost::server {

namespace {

constexpr std::size_t max_pending = 100'000;
constexpr std::size_t wake_at = 1024;  // a busy daemon's records are written in batches of this many
constexpr auto write_period = std::chrono::milliseconds(200);
constexpr std::size_t summary_string_chars = 256;
constexpr std::size_t summary_bytes = 64;
constexpr std::size_t summary_items = 32;
constexpr int summary_depth = 8;

}  // namespace

journal::journal(std::filesystem::path file, std::uint64_t rotate_bytes, unsigned keep_files) {
  if (file.empty()) return;
  out_ = std::make_unique<logging::rotating_file>(std::move(file), rotate_bytes, keep_files);
  writer_ = std::thread([this] { write_loop(); });
}

journal::~journal() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void journal::record(journal_record r) {
  if (!enabled()) return;
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() >= max_pending) {
      ++dropped_;
      return;
    }
    pending_.push_back(std::move(r));
    // The writer comes by itself every write_period, so a call does not pay a wakeup; only a
    // daemon busy enough to gather a batch wakes it, so that the records it holds stay few.
    wake = pending_.size() == wake_at;
  }
  if (wake) wake_.notify_all();
}

void journal::write_loop() {
  std::vector<journal_record> batch;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait_for(lock, write_period, [&] { return stopping_ || pending_.size() >= wake_at; });
    batch.swap(pending_);
    const std::uint64_t dropped = std::exchange(dropped_, 0);
    const bool last = stopping_;
    lock.unlock();
    if (!batch.empty() || dropped > 0) write(batch, dropped);
    batch.clear();
    lock.lock();
    if (last && pending_.empty()) return;
  }
}

value journal::summary(const value& v, int depth) {
  switch (v.kind()) {
    case value_kind::string:
      if (v.as_string().size() <= summary_string_chars) return v;
      return map{{"string_chars", static_cast<std::int64_t>(v.as_string().size())},
                 {"start", v.as_string().substr(0, summary_string_chars)}};
    case value_kind::bytes:
      if (v.as_bytes().data.size() <= summary_bytes) return v;
      return map{{"bytes", static_cast<std::int64_t>(v.as_bytes().data.size())}};
    case value_kind::array: {
      const auto& a = v.as_array();
      list shape;
      if (a.shape.empty()) shape.emplace_back(static_cast<std::int64_t>(a.count()));
      for (auto d : a.shape) shape.emplace_back(static_cast<std::int64_t>(d));
      return map{{"array", std::string(element_type_name(a.type))}, {"shape", std::move(shape)}};
    }
    case value_kind::list: {
      if (depth >= summary_depth) return map{{"list", static_cast<std::int64_t>(v.as_list().size())}};
      list out;
      for (std::size_t i = 0; i < v.as_list().size() && i < summary_items; ++i)
        out.push_back(summary(v.as_list()[i], depth + 1));
      if (v.as_list().size() > summary_items)
        out.push_back(map{{"more_items", static_cast<std::int64_t>(v.as_list().size() - summary_items)}});
      return out;
    }
    case value_kind::map: {
      if (depth >= summary_depth) return map{{"map", static_cast<std::int64_t>(v.as_map().size())}};
      map out;
      for (std::size_t i = 0; i < v.as_map().size() && i < summary_items; ++i)
        out.emplace_back(v.as_map()[i].first, summary(v.as_map()[i].second, depth + 1));
      if (v.as_map().size() > summary_items)
        out.emplace_back("more_items", static_cast<std::int64_t>(v.as_map().size() - summary_items));
      return out;
    }
    default:
      return v;
  }
}

void journal::write(std::vector<journal_record>& records, std::uint64_t dropped) {
  std::string text;
  for (auto& r : records) {
    map line{{"time", r.time},     {"action", r.action}, {"service", r.service},
             {"client", r.client}, {"pid", r.pid},       {"address", r.address}};
    if (!r.method.empty()) line.emplace_back(r.action == "subscribe" ? "topic" : "method", r.method);
    if (!r.arguments.is_null()) line.emplace_back("arguments", summary(r.arguments));
    if (!r.certificate.empty()) line.emplace_back("certificate", r.certificate);
    line.emplace_back("outcome", r.outcome);
    text += protocol::to_json_text(line) + "\n";
  }
  if (dropped > 0)
    text += protocol::to_json_text(map{{"time", std::chrono::duration<double>(
                                                    std::chrono::system_clock::now().time_since_epoch())
                                                    .count()},
                                       {"action", "records_dropped"},
                                       {"count", static_cast<std::int64_t>(dropped)}}) +
            "\n";
  if (!out_->write(text))
    LABHOST_LOG(error) << "cannot write the journal " << out_->path().string() << "; these records are lost";
}

}  // namespace labhost::server
