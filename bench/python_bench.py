#!/usr/bin/env python3
"""labhost-bench for the Python client: cases 1 and 3 of docs/performance.md, and the
asyncio client's small-call rate.

    bench/python_bench.py [--quick] [--json] [--port PORT] [--in-flight N]
                          [--labhost PATH] [--plugins DIR] [--busy-poll-us N]

Like build/bin/labhost-bench it starts what it measures: a `labhost daemon` (sim_laser as
"laser", sim_camera 2048 x 2048 as "camera", threaded, pool_size 4) on an ephemeral loopback
port, unless --port names a daemon already serving those two services. The floor is a raw
blocking Python socket client talking to a raw blocking Python socket server (a separate
process, a thread per connection) over loopback with TCP_NODELAY, exchanging messages of
the sizes labhost's frames have, measured on the daemon. The floor's framing is the one of
the C++ floor (bench/raw_socket.h): a 16-byte header with the payload length, then the
payload; the client reads into a buffer allocated once.

Cases:
  1. laser.wavelength(), one client, sequential: median and p99 round trip (us);
  3. camera.grab(), a 2048 x 2048 uint16 frame (8 MiB): MB/s (10^6 bytes of reply frame per
     second);
  a. laser.wavelength() from labhost.aio with N calls in flight on one connection (N tasks,
     each calling in turn; --in-flight, default 32): calls/s, beside the sync client's
     sequential calls/s and the floor's, both from case 1's round trips (calls / their time).
Ratios are labhost / floor, as in labhost-bench (for calls/s: the floor's over labhost's, so
that above 1 is slower than the floor, like the round-trip ratios).
--busy-poll-us N sets the daemon's busy_poll_us and the sync client's (default 50, as in
host.json; 0 never polls); the asyncio client never busy-polls.
"""

import argparse
import asyncio
import json
import math
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HEADER = 16
GRAB_BYTES = 2048 * 2048 * 2


# --------------------------------------------------------------------------- wire helpers

def _value(v):
    """The labhost encoding of the few value kinds the size probe sends (docs/protocol.md)."""
    if v is None:
        return b"\x00"
    if isinstance(v, int):
        return b"\x02" + struct.pack("<q", v)
    if isinstance(v, str):
        data = v.encode("utf-8")
        return b"\x04" + struct.pack("<I", len(data)) + data
    if isinstance(v, list):
        return b"\x06" + struct.pack("<I", len(v)) + b"".join(_value(e) for e in v)
    if isinstance(v, dict):
        out = b"\x07" + struct.pack("<I", len(v))
        for key, e in v.items():
            k = key.encode("utf-8")
            out += struct.pack("<I", len(k)) + k + _value(e)
        return out
    raise TypeError(type(v))


def _frame(message_type, request_id, payload):
    return b"LHST" + struct.pack("<BBHII", 1, message_type, 0, request_id, len(payload)) + payload


def _recv_exact(sock, view):
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("peer closed the connection")
        got += n


def _exchange(sock, frame):
    """Sends a labhost frame, reads the reply frame; (type, size with header)."""
    sock.sendall(frame)
    header = bytearray(HEADER)
    _recv_exact(sock, memoryview(header))
    if header[:4] != b"LHST":
        raise RuntimeError("not a labhost reply")
    message_type = header[5]
    (size,) = struct.unpack_from("<I", header, 12)
    payload = bytearray(size)
    _recv_exact(sock, memoryview(payload))
    return message_type, HEADER + size


def _connect(port):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def probe_frame_sizes(port):
    """Frame sizes of laser.wavelength() and camera.grab(), requests and results."""
    def call(request_id, service, method):
        return _frame(3, request_id, _value(
            {"service": service, "method": method, "args": [], "kwargs": {}}))

    sizes = {}
    with _connect(port) as sock:
        hello = {"client_name": "python_bench", "pid": os.getpid(), "min_version": 1,
                 "max_version": 2, "session_token": ""}  # as the clients: frames shaped
        kind, _ = _exchange(sock, _frame(1, 1, _value(hello)))
        if kind != 2:
            raise RuntimeError("the daemon did not welcome the size probe")
        for key, request_id, service, method in (("call", 2, "laser", "wavelength"),
                                                 ("grab", 3, "camera", "grab")):
            frame = call(request_id, service, method)
            kind, reply = _exchange(sock, frame)
            if kind != 4:
                raise RuntimeError("%s.%s() failed in the size probe" % (service, method))
            sizes[key] = (len(frame), reply)
        sock.sendall(_frame(10, 0, b"\x00"))
    return sizes


# --------------------------------------------------------------------------- floor

def floor_server():
    """`python_bench.py --floor-server`: serves floor requests until killed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print("floor listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)

    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        header = bytearray(HEADER)
        header_view = memoryview(header)
        payload = bytearray()
        reply = bytearray(HEADER)  # header + payload, sent in one call
        try:
            while True:
                _recv_exact(conn, header_view)
                size, reply_size = struct.unpack_from("<II", header, 0)
                if len(payload) != size:
                    payload = bytearray(size)
                _recv_exact(conn, memoryview(payload))
                if len(reply) != HEADER + reply_size:
                    reply = bytearray(HEADER + reply_size)
                    struct.pack_into("<I", reply, 0, reply_size)
                conn.sendall(reply)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


class FloorClient:
    """One floor connection; round_trip() sends `request` bytes and reads `reply` bytes."""

    def __init__(self, port, request, reply):
        self.sock = _connect(port)
        self.request = bytearray(request)
        struct.pack_into("<II", self.request, 0, request - HEADER, reply - HEADER)
        self.request = bytes(self.request)
        self.reply = bytearray(reply)
        self.header = memoryview(self.reply)[:HEADER]
        self.payload = memoryview(self.reply)[HEADER:]

    def round_trip(self):
        self.sock.sendall(self.request)
        _recv_exact(self.sock, self.header)
        _recv_exact(self.sock, self.payload)

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------- processes

class Child:
    """A process whose first stdout line ends in "listening on 127.0.0.1:PORT"."""

    def __init__(self, argv, log_path, what):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30.0)  # bounds a broken start
        line = self.proc.stdout.readline().decode() if ready else ""
        marker = " listening on 127.0.0.1:"
        if marker not in line:
            self.stop()
            with open(log_path, errors="replace") as log:
                raise RuntimeError("%s did not start; its log:\n%s" % (what, log.read()))
        self.port = int(line.split(marker)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def start_daemon(labhost, plugins, folder, busy_poll_us):
    config = {
        "plugin_dir": os.path.abspath(plugins),
        "daemons": {"bench": {
            "address": "127.0.0.1:0", "server_type": "threaded", "pool_size": 4,
            "busy_poll_us": busy_poll_us,
            "max_connections": 64, "lease_s": 3,
            "services": {
                "laser": {"driver": "sim_laser"},
                "camera": {"driver": "sim_camera", "params": {"width": 2048, "height": 2048}},
            }}},
    }
    path = os.path.join(folder, "host.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return Child([labhost, "daemon", "--config", path, "--name", "bench"],
                 os.path.join(folder, "daemon.log"), "labhost daemon")


# --------------------------------------------------------------------------- cases

def percentile(samples, q):
    """Nearest-rank percentile, as labhost-bench's (q = 0.5 is the median)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def nbytes(x):
    n = getattr(x, "nbytes", None)
    return n if n is not None else memoryview(x).nbytes


def run_sequential(laser, floor, calls, rounds):
    lab, flo = [], []
    for _ in range(300):
        laser.wavelength()
        floor.round_trip()
    clock = time.perf_counter_ns
    per_round = max(1, calls // rounds)
    for _ in range(rounds):  # alternating, so a drift of the machine hits both sides
        for _ in range(per_round):
            start = clock()
            laser.wavelength()
            lab.append((clock() - start) / 1000.0)
        for _ in range(per_round):
            start = clock()
            floor.round_trip()
            flo.append((clock() - start) / 1000.0)
    return {
        "py_seq_calls_per_s": round(len(lab) / (sum(lab) / 1e6)),
        "py_seq_floor_calls_per_s": round(len(flo) / (sum(flo) / 1e6)),
        "py_seq_rtt_us": round(percentile(lab, 0.5), 1),
        "py_seq_rtt_p99_us": round(percentile(lab, 0.99), 1),
        "py_seq_rtt_floor_us": round(percentile(flo, 0.5), 1),
        "py_seq_rtt_floor_p99_us": round(percentile(flo, 0.99), 1),
        "py_seq_rtt_ratio": round(percentile(lab, 0.5) / percentile(flo, 0.5), 3),
    }


def run_async_rate(port, in_flight, calls):
    """Case a: calls/s of labhost.aio with `in_flight` calls at once on one connection."""
    import labhost.aio
    from labhost import protocol

    async def measure():
        conn = await labhost.aio.connect_daemon("lab://127.0.0.1:%d" % port, heartbeats=False)
        prefix = protocol.call_prefix("laser", "wavelength")
        per_task = max(1, calls // in_flight)

        async def caller(count):
            for _ in range(count):
                await conn.call_prefixed(prefix, (), None)
        try:
            await asyncio.gather(*(caller(max(1, 300 // in_flight)) for _ in range(in_flight)))
            start = time.perf_counter()
            await asyncio.gather(*(caller(per_task) for _ in range(in_flight)))
            return per_task * in_flight / (time.perf_counter() - start)
        finally:
            await conn.close()

    return {"py_async_in_flight": in_flight, "py_async_calls_per_s": round(asyncio.run(measure()))}


def run_bulk(camera, floor, grabs, rounds, reply_size):
    for _ in range(2):
        if nbytes(camera.grab()) != GRAB_BYTES:
            raise RuntimeError("camera.grab() did not return 2048 x 2048 uint16")
        floor.round_trip()
    per_round = max(1, grabs // rounds)
    lab = flo = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            camera.grab()
        lab += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(per_round):
            floor.round_trip()
        flo += time.perf_counter() - start
    megabytes = reply_size * per_round * rounds / 1e6
    return {
        "py_bulk_MBps": round(megabytes / lab),
        "py_bulk_floor_MBps": round(megabytes / flo),
        "py_bulk_ratio": round(flo / lab, 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--port", type=int, help="a running daemon with laser and camera")
    parser.add_argument("--labhost", default=os.path.join(REPO, "build", "bin", "labhost"))
    parser.add_argument("--plugins", default=os.path.join(REPO, "plugins"))
    parser.add_argument("--busy-poll-us", type=int, default=50,
                        help="the daemon's and the client's busy polling (0: never poll)")
    parser.add_argument("--in-flight", type=int, default=32,
                        help="calls in flight at once for the asyncio case (default 32)")
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server()
        return 0

    sys.path.insert(0, os.path.join(REPO, "clients", "python"))
    import labhost  # the package in clients/python

    if args.in_flight < 1:
        parser.error("--in-flight: at least 1")
    calls, grabs, rounds = (2000, 10, 2) if args.quick else (20000, 60, 5)
    folder = tempfile.mkdtemp(prefix="labhost-pybench-")
    daemon = floor = None
    try:
        if args.port:
            port = args.port
        else:
            daemon = start_daemon(args.labhost, args.plugins, folder, args.busy_poll_us)
            port = daemon.port
        floor = Child([sys.executable, os.path.abspath(__file__), "--floor-server"],
                      os.path.join(folder, "floor.log"), "the Python floor server")
        sizes = probe_frame_sizes(port)
        results = {"py_call_frame_bytes": sizes["call"][0], "py_result_frame_bytes": sizes["call"][1],
                   "py_bulk_bytes": sizes["grab"][1]}

        with labhost.connect("lab://127.0.0.1:%d/laser" % port, busy_poll_us=args.busy_poll_us) as laser:
            small = FloorClient(floor.port, *sizes["call"])
            results.update(run_sequential(laser, small, calls, rounds))
            small.close()
        results.update(run_async_rate(port, args.in_flight, calls))
        results["py_async_ratio"] = round(
            results["py_seq_floor_calls_per_s"] / results["py_async_calls_per_s"], 3)

        with labhost.connect("lab://127.0.0.1:%d/camera" % port, busy_poll_us=args.busy_poll_us) as camera:
            big = FloorClient(floor.port, *sizes["grab"])
            results.update(run_bulk(camera, big, grabs, rounds, sizes["grab"][1]))
            big.close()
        results["quick"] = args.quick
    finally:
        for child in (floor, daemon):
            if child is not None:
                child.stop()
        shutil.rmtree(folder, ignore_errors=True)

    if args.json:
        print(json.dumps(results))
    else:
        print("labhost Python client (%s run, busy_poll_us %d); floor: raw Python sockets, same sizes" %
              ("quick" if args.quick else "full", args.busy_poll_us))
        print("%-40s %8s %12s %12s" % ("case", "ratio", "labhost", "floor"))
        print("%-40s %8.2f %12.1f %12.1f" % ("1 small call, 1 client: median us", results["py_seq_rtt_ratio"],
                                             results["py_seq_rtt_us"], results["py_seq_rtt_floor_us"]))
        print("%-40s %8.2f %12.1f %12.1f" % ("  p99 us",
                                             results["py_seq_rtt_p99_us"] / results["py_seq_rtt_floor_p99_us"],
                                             results["py_seq_rtt_p99_us"], results["py_seq_rtt_floor_p99_us"]))
        print("%-40s %8.2f %12.0f %12.0f" % ("3 8 MiB typed array: MB/s", results["py_bulk_ratio"],
                                             results["py_bulk_MBps"], results["py_bulk_floor_MBps"]))
        floor_rate = results["py_seq_floor_calls_per_s"]
        print("%-40s %8.2f %12.0f %12.0f" % ("a asyncio, %d in flight: calls/s" % results["py_async_in_flight"],
                                             results["py_async_ratio"], results["py_async_calls_per_s"],
                                             floor_rate))
        print("%-40s %8.2f %12.0f %12.0f" % ("  sync client, sequential: calls/s",
                                             floor_rate / results["py_seq_calls_per_s"],
                                             results["py_seq_calls_per_s"], floor_rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
