// labhost/description.h: what `describe` tells about a daemon's services and their methods.
#ifndef LABHOST_DESCRIPTION_H
#define LABHOST_DESCRIPTION_H

#include <cstdint>
#include <string>
#include <vector>

namespace labhost {

struct parameter_description {
  std::string name;
  std::string type;  // "float64", "int64", "bool", "string", "array<uint16>", "any", ...
};

struct method_description {
  std::string name;
  std::vector<parameter_description> params;
  std::string returns;  // type name, "null" for none
  std::string doc;
  bool oneway = false;  // the driver marks it oneway: callers need no reply
};

/// A topic a service publishes values on (events).
struct topic_description {
  std::string name;
  std::string type;  // the values' type, as a method's result type
  std::string doc;
};

struct service_description {
  std::string name;            // service name in its daemon
  std::string driver;          // plugin name
  std::string driver_version;
  std::string vendor;
  std::string description;
  std::string state;           // "ready", "waiting" (the instrument did not open yet; retried)
                               // or "unavailable" (the plugin was refused: never)
  std::string reason;          // why waiting or unavailable; empty when ready
  std::int64_t calls_pending = 0;  // calls accepted and not finished: running and queued
  std::vector<method_description> methods;  // filled when one service is described
  std::vector<topic_description> topics;     // likewise
};

struct daemon_description {
  std::string daemon;  // daemon name from host.json
  std::vector<service_description> services;
};

}  // namespace labhost

#endif  // LABHOST_DESCRIPTION_H
