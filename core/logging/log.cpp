#include "log.h"

#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_file_backend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/record_ostream.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <boost/log/support/date_time.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/core/null_deleter.hpp>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <stdexcept>

namespace labhost::logging {

// Found by argument-dependent lookup when Boost.Log formats the Severity attribute.
std::ostream& operator<<(std::ostream& os, severity level) {
  switch (level) {
    case severity::debug: return os << "debug";
    case severity::info: return os << "info";
    case severity::warning: return os << "warning";
    case severity::error: return os << "error";
  }
  return os;
}

namespace {

namespace bl = boost::log;
namespace expr = boost::log::expressions;

BOOST_LOG_ATTRIBUTE_KEYWORD(severity_attr, "Severity", severity)
BOOST_LOG_ATTRIBUTE_KEYWORD(role_attr, "Role", std::string)
BOOST_LOG_ATTRIBUTE_KEYWORD(service_attr, "Service", std::string)
BOOST_LOG_ATTRIBUTE_KEYWORD(raw_attr, "Raw", bool)

std::once_flag sink_once;
severity minimum_severity = severity::info;  // written once, under sink_once

bl::formatter formatter() {
  // A raw record (a child's line, already formatted) is written as it is.
  return expr::stream << expr::if_(expr::has_attr(raw_attr))[expr::stream << expr::smessage]
                             .else_[expr::stream
                                    << expr::format_date_time<boost::posix_time::ptime>(
                                           "TimeStamp", "%Y-%m-%d %H:%M:%S.%f")
                                    << " " << severity_attr << " [" << role_attr << "]"
                                    << expr::if_(expr::has_attr(service_attr))[expr::stream << " " << service_attr]
                                    << " " << expr::smessage];
}

bl::filter filter(severity minimum) {
  return expr::has_attr(raw_attr) || severity_attr >= minimum;
}

void install_sink(std::string_view role, severity minimum) {
  minimum_severity = minimum;
  using sink_t = bl::sinks::synchronous_sink<bl::sinks::text_ostream_backend>;
  auto backend = boost::make_shared<bl::sinks::text_ostream_backend>();
  backend->add_stream(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
  backend->auto_flush(true);
  auto sink = boost::make_shared<sink_t>(backend);
  sink->set_formatter(formatter());
  sink->set_filter(filter(minimum));
  bl::core::get()->add_sink(sink);
  bl::add_common_attributes();
  bl::core::get()->add_global_attribute("Role",
                                        bl::attributes::constant<std::string>(std::string(role)));
}

}  // namespace

void init(std::string_view role, severity minimum) {
  std::call_once(sink_once, [&] { install_sink(role, minimum); });
}

void add_file(const std::string& file, std::uint64_t rotate_bytes, unsigned keep_files) {
  namespace sinks = bl::sinks;
  namespace keywords = bl::keywords;
  std::filesystem::path path(file);
  auto folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(folder);
  auto backend = boost::make_shared<sinks::text_file_backend>(
      keywords::file_name = path.string(), keywords::target_file_name = path.filename().string() + ".%N",
      keywords::rotation_size = rotate_bytes, keywords::open_mode = std::ios::out | std::ios::app);
  backend->auto_flush(true);
  backend->set_file_collector(sinks::file::make_collector(
      keywords::target = (folder / "rotated").string(), keywords::max_files = keep_files));
  backend->scan_for_files();
  using sink_t = sinks::synchronous_sink<sinks::text_file_backend>;
  auto sink = boost::make_shared<sink_t>(backend);
  sink->set_formatter(formatter());
  sink->set_filter(filter(minimum_severity));
  bl::core::get()->add_sink(sink);
}

void write_raw(std::string_view line) {
  init("labhost");
  bl::sources::severity_logger<severity> logger;
  logger.add_attribute("Raw", bl::attributes::constant<bool>(true));
  BOOST_LOG_SEV(logger, severity::info) << line;
}

severity parse_severity(std::string_view text) {
  if (text == "debug") return severity::debug;
  if (text == "info") return severity::info;
  if (text == "warning") return severity::warning;
  if (text == "error") return severity::error;
  throw std::invalid_argument("log level \"" + std::string(text) +
                              "\" (expected debug, info, warning or error)");
}

void write(severity level, std::string_view service, std::string_view message) {
  init("labhost");  // a library user who never called init still gets records
  if (service.empty()) {
    thread_local bl::sources::severity_logger<severity> logger;
    BOOST_LOG_SEV(logger, level) << message;
    return;
  }
  // Records about a service are rare (start, failures): a logger per record is fine.
  bl::sources::severity_logger<severity> logger;
  logger.add_attribute("Service", bl::attributes::constant<std::string>(std::string(service)));
  BOOST_LOG_SEV(logger, level) << message;
}

}  // namespace labhost::logging
