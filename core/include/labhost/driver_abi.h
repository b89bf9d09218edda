/* labhost/driver_abi.h: the C boundary between a daemon and a driver plugin.
 *
 * A plugin is a shared object exporting ONE data symbol, `labhost_driver_entry`, whose value
 * is the address of a function `const labhost_driver_descriptor* entry(void)`. That is the
 * layout Boost.DLL's BOOST_DLL_ALIAS produces; a C driver can write it by hand:
 *
 *   static const labhost_driver_descriptor* my_entry(void) { return &my_descriptor; }
 *   LABHOST_EXPORT const void* labhost_driver_entry = (const void*)&my_entry;
 *
 * Rules of the boundary (docs/driver-sdk.md):
 * - Only C types cross it. No C++ object, no exception, and no memory changes owner: whoever
 *   allocates frees. A driver hands bytes back by calling the host's labhost_output, which
 *   copies them, or (since 1.1) writes them into memory the host lends it (reserve).
 * - Values (create parameters, call arguments, results) travel encoded in the value format of
 *   docs/protocol.md ("Values"). Arguments are always one encoded list, already in parameter
 *   order: the daemon resolves keyword arguments and checks the count.
 * - The descriptor starts with struct_size and abi_version. The host accepts the same major,
 *   refuses a newer minor, and treats fields past struct_size as absent.
 * - The descriptor and every string it points to stay valid while the library is loaded;
 *   the daemon never unloads a plugin while it runs.
 * - Thread-safety: the daemon never calls into one instance from two threads at once. Calls
 *   on different instances may run in parallel.
 * - Since 1.2, a driver may publish values on topics (events, docs/driver-sdk.md): the host
 *   hands each instance a labhost_events right after create, and the driver may publish
 *   through it from any of its threads until its close returns.
 */
#ifndef LABHOST_DRIVER_ABI_H
#define LABHOST_DRIVER_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LABHOST_ABI_VERSION_MAJOR 1
#define LABHOST_ABI_VERSION_MINOR 2
#define LABHOST_ABI_VERSION ((LABHOST_ABI_VERSION_MAJOR << 16) | LABHOST_ABI_VERSION_MINOR)

/* Name of the exported entry symbol. */
#define LABHOST_ENTRY_SYMBOL "labhost_driver_entry"

#if defined(_WIN32)
#define LABHOST_EXPORT __declspec(dllexport)
#else
#define LABHOST_EXPORT __attribute__((visibility("default")))
#endif

/* Status codes returned by create/invoke/close/health. */
enum {
  LABHOST_OK = 0,
  LABHOST_BAD_ARGUMENTS = 1, /* output holds a UTF-8 message naming the parameter */
  LABHOST_DRIVER_ERROR = 2,  /* output holds a UTF-8 message from the driver */
  LABHOST_UNAVAILABLE = 3    /* instrument not reachable (yet); output holds the reason */
};

/* A sink the host provides. write() appends `size` bytes; it returns 0 on success and
 * non-zero when the host refuses (out of memory, over its limit); the driver then stops
 * writing and returns an error status.
 * Since ABI 1.1: reserve() appends `size` bytes that the driver writes itself, at the address
 * it returns (16-byte aligned, owned by the host, valid until the next write or reserve on
 * this output or until the driver's function returns),
 * and NULL when the host refuses (out of memory, over its limit); a large result (a camera frame) is then written once, in
 * place, without a copy. reserve may be NULL: the host does not offer it there (it offers it
 * to invoke). When the function then fails, its message is what it wrote after its last
 * reserve call (granted or refused). A driver built for ABI 1.0 never reads this field. */
typedef struct labhost_output {
  void* context;
  int (*write)(void* context, const uint8_t* data, size_t size);
  uint8_t* (*reserve)(void* context, size_t size); /* since 1.1; may be NULL */
} labhost_output;

typedef struct labhost_param_info {
  const char* name; /* as used in keyword arguments */
  const char* type; /* "float64", "int64", "bool", "string", "bytes", "list", "map",
                       "array<uint16>", "any", ... for describe */
} labhost_param_info;

/* Bits of labhost_driver_descriptor.method_flags (since 1.2). */
enum {
  LABHOST_METHOD_ONEWAY = 1 /* callers need no reply: clients send the call and go on */
};

/* A topic the driver publishes values on (since 1.2). */
typedef struct labhost_topic_info {
  const char* name; /* as clients subscribe to it ("frames") */
  const char* type; /* the values' type name, as for a method's result ("array<uint16>") */
  const char* doc;
} labhost_topic_info;

/* What the host gives an instance for publishing (since 1.2). Every function may be called
 * from any thread of the driver, at any time from attach_events until the instance's close
 * returns (or destroy, when the descriptor has no close); after that they refuse. `topic` is
 * an index into the descriptor's topics. A published value is one encoded value; the host
 * copies it (publish) or lends the memory for it (reserve, then commit). */
typedef struct labhost_events {
  void* context;
  /* Subscribers of the topic now, and how many of them could take another event without
   * dropping one: a driver may produce values (a camera frame) only while someone wants them. */
  void (*demand)(void* context, uint32_t topic, uint32_t* subscribers, uint32_t* ready);
  /* Publishes one encoded value of `size` bytes (copied). Returns 0, or non-zero when refused
   * (no such topic, larger than the daemon's max_frame_bytes, the instance is closed). */
  int (*publish)(void* context, uint32_t topic, const uint8_t* value, size_t size);
  /* Lends `size` bytes for one encoded value that the driver writes in place, placed so that
   * the byte at offset `aligned_at` is 16-byte aligned (an array's elements after its prefix);
   * *handle identifies it for commit. NULL when refused. */
  uint8_t* (*reserve)(void* context, uint32_t topic, size_t size, size_t aligned_at, void** handle);
  /* Ends a reserve: publishes what was written there when `publish` is non-zero, else drops
   * it. Every reserve that did not return NULL must be committed once. Returns 0, or non-zero
   * when refused (the instance closed meanwhile). */
  int (*commit)(void* context, void* handle, int publish);
} labhost_events;

typedef struct labhost_method_info {
  const char* name;
  const labhost_param_info* params;
  uint32_t param_count;
  const char* returns; /* type name as for params; "null" for none */
  const char* doc;
} labhost_method_info;

typedef struct labhost_driver_descriptor {
  uint32_t struct_size; /* sizeof(labhost_driver_descriptor) as the driver was built */
  uint32_t abi_version; /* LABHOST_ABI_VERSION the driver was built against */
  const char* name;     /* plugin name, equal to the file's stem ("sim_laser") */
  const char* version;  /* driver version, free text ("1.2.0") */
  const char* vendor;
  const char* description;

  const labhost_method_info* methods;
  uint32_t method_count;

  /* Opens one instance with `params` (an encoded map; an empty map when host.json gives
   * none). On LABHOST_OK, *instance is set. Otherwise `error` holds the reason. */
  int (*create)(const uint8_t* params, size_t params_size, void** instance,
                labhost_output* error);
  /* Frees an instance; close() was called first when present. Never fails. */
  void (*destroy)(void* instance);
  /* Calls methods[method_index] with `args` (an encoded list). On LABHOST_OK `result`
   * holds one encoded value; otherwise it holds a UTF-8 message. */
  int (*invoke)(void* instance, uint32_t method_index, const uint8_t* args, size_t args_size,
                labhost_output* result);

  /* Optional (may be NULL): releases the hardware before destroy. */
  int (*close)(void* instance, labhost_output* error);
  /* Optional (may be NULL): LABHOST_OK when the instrument answers, else the reason. */
  int (*health)(void* instance, labhost_output* error);

  /* Since 1.2 (absent from older drivers). */
  const uint32_t* method_flags; /* NULL, or method_count LABHOST_METHOD_* bit sets */
  const labhost_topic_info* topics;
  uint32_t topic_count;
  /* Optional (may be NULL): called once per instance, right after create, with what the
   * instance may publish through; `events` stays valid until destroy. */
  void (*attach_events)(void* instance, const labhost_events* events);
} labhost_driver_descriptor;

typedef const labhost_driver_descriptor* (*labhost_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* LABHOST_DRIVER_ABI_H */
