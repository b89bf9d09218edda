// test_echo: a driver for tests. Echoes values, fails on request, and has gates: a call
// that blocks until the test opens it, so concurrency tests wait on events, not sleeps.
// Gates are process-wide, so two services of one daemon (two instances) share them.
// Events: emit() publishes numbers and emit_frames() shaped frames when the test asks, so
// tests know exactly what was published; record() is oneway.
#include <labhost/driver.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

namespace {

struct gate {
  int waiting = 0;  // calls inside wait_gate
  bool open = false;
};

std::mutex gates_mutex;  // guards gates
std::condition_variable gates_changed;
std::map<std::string, gate> gates;

std::atomic<std::int64_t> sequence_counter{0};  // orders events across instances and threads
std::atomic<int> instances_alive{0};
std::atomic<int> instances_created{0};

class test_echo {
 public:
  explicit test_echo(const labhost::params& p) : label_(p.get("label", "echo")) {
    ++instances_alive;
    ++instances_created;
  }
  ~test_echo() { --instances_alive; }
  test_echo(const test_echo&) = delete;
  test_echo& operator=(const test_echo&) = delete;

  labhost::value echo(labhost::value v) { return v; }
  std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }
  double scale(double x, double factor) { return x * factor; }
  std::string label() const { return label_; }
  void fail(std::string message) { throw labhost::driver_error(message); }
  void fail_unknown() { throw 42; }
  double sum(std::vector<double> values) {
    double total = 0;
    for (double v : values) total += v;
    return total;
  }
  std::vector<std::uint16_t> ramp(std::int64_t count) {
    std::vector<std::uint16_t> out(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint16_t>(i);
    return out;
  }
  labhost::array_result<std::uint16_t> ramp_in_place(std::int64_t count) {
    return {static_cast<std::size_t>(count), [](std::span<std::uint16_t> out) {
              for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint16_t>(i);
            }};
  }
  labhost::array_result<double> fail_in_place() {
    return {4, [](std::span<double>) { throw labhost::driver_error("sensor lost while reading out"); }};
  }
  labhost::bytes reverse_bytes(labhost::bytes b) {
    std::reverse(b.data.begin(), b.data.end());
    return b;
  }
  std::int64_t calls() { return ++calls_; }

  /// Blocks until open_gate(name); returns how many calls were waiting in it, itself included.
  std::int64_t wait_gate(std::string name) {
    std::unique_lock lock(gates_mutex);
    auto& g = gates[name];
    ++g.waiting;
    gates_changed.notify_all();
    gates_changed.wait(lock, [&] { return gates[name].open; });
    std::int64_t waiting = gates[name].waiting;
    --gates[name].waiting;
    return waiting;
  }
  /// Blocks until at least `count` calls wait in gate `name`.
  void wait_entered(std::string name, std::int64_t count) {
    std::unique_lock lock(gates_mutex);
    gates_changed.wait(lock, [&] { return gates[name].waiting >= count; });
  }
  std::int64_t waiting(std::string name) {
    std::lock_guard lock(gates_mutex);
    return gates[name].waiting;
  }
  void open_gate(std::string name) {
    std::lock_guard lock(gates_mutex);
    gates[name].open = true;
    gates_changed.notify_all();
  }
  /// Blocks until a file exists (counted as waiting in gate `path`): a gate the test opens
  /// without calling the daemon, for when the daemon refuses new calls.
  void wait_file(std::string path) {
    {
      std::lock_guard lock(gates_mutex);
      ++gates[path].waiting;
      gates_changed.notify_all();
    }
    while (!std::filesystem::exists(path)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard lock(gates_mutex);
    --gates[path].waiting;
  }
  /// Blocks until a writer opens the FIFO at `path` and writes a byte. The test's open()
  /// returns once this call is inside the driver: an event, not a guess. Returns the
  /// sequence number taken on the way out.
  std::int64_t wait_fifo(std::string path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw labhost::driver_error("cannot open " + path);
    char byte;
    while (::read(fd, &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(fd);
    return ++sequence_counter;
  }
  /// The next number of a process-wide sequence.
  std::int64_t sequence() { return ++sequence_counter; }
  std::int64_t alive() { return instances_alive.load(); }
  std::int64_t created() { return instances_created.load(); }

  // --- Shapes and element types.
  /// A height x width uint16 frame, written in place: pixel (y, x) = y * width + x (mod 2^16).
  labhost::array_result<std::uint16_t> frame(std::int64_t height, std::int64_t width) {
    const auto w = static_cast<std::size_t>(width);
    return labhost::shaped_result<std::uint16_t>(
        {static_cast<std::uint32_t>(height), static_cast<std::uint32_t>(width)}, [w](std::span<std::uint16_t> px) {
          for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint16_t>((i / w) * w + i % w);
        });
  }
  /// The shape of an array argument ([] for a flat one) and its element type.
  labhost::value shape_of(labhost::typed_array a) {
    labhost::list dims;
    for (auto d : a.shape) dims.emplace_back(static_cast<std::int64_t>(d));
    return labhost::map{{"shape", dims}, {"dtype", std::string(labhost::element_type_name(a.type))},
                        {"count", static_cast<std::int64_t>(a.count())}};
  }
  /// Complex conjugates, as a complex128 array.
  std::vector<std::complex<double>> conjugate(std::vector<std::complex<double>> values) {
    for (auto& v : values) v = std::conj(v);
    return values;
  }
  /// Logical not of a bool array, shape kept.
  labhost::typed_array negate(labhost::typed_array flags) {
    if (flags.type != labhost::element_type::boolean) throw labhost::bad_arguments_error("flags: expected array<bool>");
    for (auto& b : flags.data) b = b ? 0 : 1;
    return flags;
  }

  // --- Events.
  void set_publisher(labhost::publisher p) { publisher_ = p; }
  /// Publishes `count` numbers on "numbers", the next ones of this instance's count (1, 2,
  /// ...); returns how many the daemon took.
  std::int64_t emit(std::int64_t count) {
    std::int64_t taken = 0;
    for (std::int64_t i = 0; i < count; ++i) taken += publisher_.publish("numbers", ++emitted_) ? 1 : 0;
    return taken;
  }
  /// Publishes `count` height x width uint16 frames on "frames", in place; every pixel of
  /// frame n (counted by this instance from 1) is n mod 2^16. Returns how many were taken.
  std::int64_t emit_frames(std::int64_t count, std::int64_t height, std::int64_t width) {
    std::int64_t taken = 0;
    for (std::int64_t i = 0; i < count; ++i) {
      const auto n = static_cast<std::uint16_t>(++frames_emitted_);
      taken += publisher_.publish_array<std::uint16_t>(
                   "frames", {static_cast<std::uint32_t>(height), static_cast<std::uint32_t>(width)},
                   [n](std::span<std::uint16_t> px) { std::fill(px.begin(), px.end(), n); })
                   ? 1
                   : 0;
    }
    return taken;
  }
  /// [subscribers, ready] of a topic.
  std::vector<std::int64_t> demand(std::string topic) {
    auto d = publisher_.demand(topic);
    return {static_cast<std::int64_t>(d.subscribers), static_cast<std::int64_t>(d.ready)};
  }

  // --- Oneway.
  void record(labhost::value v) {
    std::lock_guard lock(recorded_mutex_);
    recorded_.push_back(std::move(v));
  }
  labhost::list recorded() {
    std::lock_guard lock(recorded_mutex_);
    return recorded_;
  }

 private:
  std::string label_;
  std::int64_t calls_ = 0;
  labhost::publisher publisher_;
  std::int64_t emitted_ = 0;
  std::int64_t frames_emitted_ = 0;
  std::mutex recorded_mutex_;
  labhost::list recorded_;
};

}  // namespace

LABHOST_DRIVER(test_echo, "test_echo", "0.1.0", "labhost tests", "Echo and gate driver for tests",
    labhost::method(&test_echo::echo, "echo", {"value"}, "Returns its argument."),
    labhost::method(&test_echo::add, "add", {"a", "b"}, "a + b."),
    labhost::method(&test_echo::scale, "scale", {"x", "factor"}, "x * factor."),
    labhost::method(&test_echo::label, "label", {}, "The label parameter."),
    labhost::method(&test_echo::fail, "fail", {"message"}, "Throws driver_error(message)."),
    labhost::method(&test_echo::fail_unknown, "fail_unknown", {}, "Throws a non-std exception."),
    labhost::method(&test_echo::sum, "sum", {"values"}, "Sum of a float64 array or list."),
    labhost::method(&test_echo::ramp, "ramp", {"count"}, "uint16 array 0, 1, ..."),
    labhost::method(&test_echo::ramp_in_place, "ramp_in_place", {"count"}, "ramp, written in place."),
    labhost::method(&test_echo::fail_in_place, "fail_in_place", {}, "An in-place result that fails."),
    labhost::method(&test_echo::reverse_bytes, "reverse_bytes", {"data"}, "Bytes reversed."),
    labhost::method(&test_echo::calls, "calls", {}, "Calls of this method on this instance."),
    labhost::method(&test_echo::wait_gate, "wait_gate", {"name"}, "Blocks until open_gate(name)."),
    labhost::method(&test_echo::wait_entered, "wait_entered", {"name", "count"},
                    "Blocks until count calls wait in gate name."),
    labhost::method(&test_echo::waiting, "waiting", {"name"}, "Calls waiting in gate name."),
    labhost::method(&test_echo::open_gate, "open_gate", {"name"}, "Releases gate name for good."),
    labhost::method(&test_echo::wait_file, "wait_file", {"path"}, "Blocks until the file exists."),
    labhost::method(&test_echo::wait_fifo, "wait_fifo", {"path"}, "Blocks until a byte arrives on a FIFO."),
    labhost::method(&test_echo::sequence, "sequence", {}, "Next number of a process-wide sequence."),
    labhost::method(&test_echo::alive, "alive", {}, "Live instances of this driver."),
    labhost::method(&test_echo::created, "created", {}, "Instances created so far."),
    labhost::method(&test_echo::frame, "frame", {"height", "width"}, "A shaped uint16 frame, in place."),
    labhost::method(&test_echo::shape_of, "shape_of", {"array"}, "{shape, dtype, count} of an array."),
    labhost::method(&test_echo::conjugate, "conjugate", {"values"}, "Complex conjugates."),
    labhost::method(&test_echo::negate, "negate", {"flags"}, "Not of each bool, shape kept."),
    labhost::method(&test_echo::emit, "emit", {"count"}, "Publishes the next count numbers on numbers."),
    labhost::method(&test_echo::emit_frames, "emit_frames", {"count", "height", "width"},
                    "Publishes count frames on frames; frame n is all n."),
    labhost::method(&test_echo::demand, "demand", {"topic"}, "[subscribers, ready] of a topic."),
    labhost::oneway(labhost::method(&test_echo::record, "record", {"value"}, "Keeps value (oneway).")),
    labhost::method(&test_echo::recorded, "recorded", {}, "What record() kept, in order."),
    labhost::topic<std::int64_t>("numbers", "What emit() publishes: 1, 2, ..."),
    labhost::topic<std::vector<std::uint16_t>>("frames", "What emit_frames() publishes."))
