// journal.h: a daemon's audit journal: who locked, unlocked, force-unlocked, subscribed, and
// called which method with which arguments (docs/operations.md, "The audit journal").
//
// One JSON object per line in STATE_DIR/journal/DAEMON.jsonl, rotated by size (DAEMON.jsonl.1
// is the newest older file, up to keep_files of them). Recording costs the call path a
// push under a mutex: a writer thread formats and writes the records every 200 ms (or once
// 1024 wait, on a busy daemon), so a call never waits for the disk. Large arguments are summarised (an array by its type and shape,
// long bytes by their size), never written whole. When the writer falls behind by more than
// max_pending records, further ones are counted and the count is written instead.
// Thread-safety: record() from any thread.
#ifndef LABHOST_SERVER_JOURNAL_H
#define LABHOST_SERVER_JOURNAL_H

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../logging/rotating_file.h"
#include "labhost/value.h"

namespace labhost::server {

/// One journal line before it is written.
struct journal_record {
  double time = 0;       // Unix seconds
  std::string action;    // call, lock, unlock, force_unlock, subscribe, unsubscribe
  std::string service;
  std::string method;    // calls: the method; subscriptions: the topic
  value arguments;       // calls: {args, kwargs}; otherwise null
  std::string client;    // the session's client name
  std::int64_t pid = 0;  // the client's process id, as it said
  std::string address;   // the peer address of its connection
  std::string certificate;  // TLS client certificate subject, when there is one
  std::string outcome;   // "ok", or the error's name
};

class journal {
 public:
  /// `file` empty: records nothing.
  journal(std::filesystem::path file, std::uint64_t rotate_bytes, unsigned keep_files);
  ~journal();  // writes what is pending
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  bool enabled() const noexcept { return out_ != nullptr; }
  void record(journal_record r);

  /// A value with its large parts replaced by a description: what a journal line shows.
  static value summary(const value& v, int depth = 0);

 private:
  void write_loop();
  void write(std::vector<journal_record>& records, std::uint64_t dropped);

  std::unique_ptr<logging::rotating_file> out_;  // null: no journal; written by the writer thread

  std::mutex mutex_;  // guards pending_, dropped_, stopping_; with wake_
  std::condition_variable wake_;
  std::vector<journal_record> pending_;
  std::uint64_t dropped_ = 0;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace labhost::server

#endif  // LABHOST_SERVER_JOURNAL_H
