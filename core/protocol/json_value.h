// json_value.h: conversions between labhost::value and Boost.JSON, for host.json parameters
// and for the command line (labctl arguments and --json output).
#ifndef LABHOST_PROTOCOL_JSON_VALUE_H
#define LABHOST_PROTOCOL_JSON_VALUE_H

#include <boost/json/value.hpp>
#include <cstddef>
#include <limits>
#include <string>

#include "labhost/value.h"

namespace labhost::protocol {

/// JSON -> value: null, bool, integers (int64; a larger unsigned becomes float64), doubles,
/// strings, arrays (lists) and objects (maps, key order kept).
value json_to_value(const boost::json::value& json);

/// value -> JSON text, numbers in their shortest exact form (1550.5, not 1.5505E3). bytes
/// become {"bytes_base64": "..."}; a typed array becomes {"dtype": "uint16", "count": N,
/// "data": [...]}, with "data" left out when N exceeds `max_array_elements` (a camera frame
/// is millions of numbers). Non-finite floats, which JSON lacks, are written as null.
std::string to_json_text(const value& v,
                         std::size_t max_array_elements = std::numeric_limits<std::size_t>::max());

}  // namespace labhost::protocol

#endif  // LABHOST_PROTOCOL_JSON_VALUE_H
