"""Events (protocol version 2) with the sync client: subscriptions to the topics of real
daemons (test_echo's emit() and emit_frames(), the simulated instruments), in order, shaped,
across a resume, ended with their session; subscribers that die or stop while frames flow;
and what a fake daemon can do that a real one does not do on demand (events before the
subscribe reply, malformed events, a version-1 daemon).

Every wait is for an event, bounded: next(timeout) returns None when nothing came, and a
loop that polls the daemon gives up after POLL_TIMEOUT."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import labhost
from daemon_process import CLIENT_DIR, DaemonProcess
from frames import connection_to, event, frame, result
from labhost import protocol
from labhost.multiplexer import expect
from relay import Relay

EVENT_TIMEOUT = 30.0   # seconds for one event to come
POLL_TIMEOUT = 30.0    # seconds for a polled condition to hold
ECHO = {"echo": {"driver": "test_echo"}, "echo2": {"driver": "test_echo"}}


@pytest.fixture
def echo_daemon():
    """A fresh daemon for each test: test_echo counts what it publishes from 1."""
    d = DaemonProcess(ECHO, server_type="threaded", pool_size=4, lease_s=30)
    yield d
    d.stop()


def next_event(subscription):
    e = subscription.next(EVENT_TIMEOUT)
    assert e is not None, "no event within %g s" % EVENT_TIMEOUT
    return e


def subscribers(connection, topic, service="echo"):
    """[subscribers, ready] of a topic, as the driver's publisher sees it."""
    return [int(n) for n in connection.call(service, "demand", [topic])]


def eventually(predicate, what):
    deadline = time.monotonic() + POLL_TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "after %g s: %s" % (POLL_TIMEOUT, what)
        time.sleep(0.01)


# ------------------------------------------------------------------ events in order


def test_a_subscriber_gets_every_event_in_order(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    numbers = echo.subscribe("numbers", queue=100)
    assert (numbers.service, numbers.topic, numbers.type, numbers.queue) == ("echo", "numbers", "int64", 100)
    assert numbers.max_rate == 0.0 and numbers.id > 0
    assert subscribers(echo.connection, "numbers")[0] == 1
    assert echo.emit(50) == 50
    for i in range(1, 51):
        e = next_event(numbers)
        assert (e.value, e.seq, e.dropped, e.subscription) == (i, i, 0, numbers.id)
        assert e.time > 1.7e9 and isinstance(e, labhost.Event)
    assert numbers.dropped == 0
    assert numbers.next(0) is None  # nothing more: None at once
    numbers.close()
    assert subscribers(echo.connection, "numbers")[0] == 0
    echo.emit(5)
    assert list(numbers) == []  # iteration of a closed subscription ends at once
    with pytest.raises(labhost.ConnectionLostError, match="this subscription was closed"):
        numbers.next(0)
    numbers.close()  # idempotent


def test_iterating_a_subscription_ends_when_another_thread_closes_it(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    got = []
    with echo.subscribe("numbers", queue=64) as numbers:
        def read():
            for e in numbers:
                got.append(e.value)
                if len(got) == 3:
                    ready.set()
        ready = threading.Event()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        echo.emit(3)
        assert ready.wait(EVENT_TIMEOUT)
    reader.join(EVENT_TIMEOUT)  # the block's end closed it: the loop ended
    assert not reader.is_alive() and got == [1, 2, 3]


def test_events_and_replies_share_the_connection_and_threads(echo_daemon, connect):
    """One thread reads its events while others call: whoever waits reads, and hands the
    others what is theirs."""
    daemon = connect(echo_daemon.address())
    echo, echo2 = daemon["echo"], daemon["echo2"]
    numbers = echo.subscribe("numbers", queue=1024)
    with ThreadPoolExecutor(4) as pool:
        sums = pool.map(lambda i: echo2.add(i, 1), range(200))
        emitted = pool.submit(echo.emit, 300)
        seen = [next_event(numbers).value for _ in range(300)]
        assert list(sums) == list(range(1, 201)) and emitted.result() == 300
    assert seen == list(range(1, 301)) and numbers.dropped == 0


def test_a_slow_subscriber_loses_the_oldest_events_and_is_told(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    numbers = echo.subscribe("numbers", queue=4)
    assert echo.emit(40) == 40  # nobody takes them meanwhile: at most 4 are kept, here and there
    seen = []
    while True:
        e = numbers.next(1.0 if not seen or seen[-1] < 40 else 0)
        if e is None:
            break
        seen.append(e.seq)
        assert len(seen) <= 40
    # At most this client's queue, the daemon's, and the one it was writing.
    assert seen == sorted(seen) and seen[-1] == 40 and len(seen) <= 4 + 4 + 1
    assert numbers.dropped == 40 - len(seen)  # what the daemon and the client's queue dropped


def test_max_rate_spaces_the_events(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    numbers = echo.subscribe("numbers", queue=16, max_rate=20)
    assert numbers.max_rate == 20.0
    start = time.monotonic()
    echo.emit(5)
    times = [next_event(numbers).value and time.monotonic() for _ in range(5)]
    assert times[-1] - start >= 4 / 20 * 0.8  # 5 events at 20 a second take 0.2 s at least


def test_frames_stream_shaped_and_pixel_checked_to_several_subscribers(echo_daemon, connect):
    a = connect(echo_daemon.address("echo"))
    b = connect(echo_daemon.address("echo"))
    frames_a = a.subscribe("frames", queue=8)
    stream_b = b.stream("frames", queue=8)
    assert a.emit_frames(3, 64, 48) == 3
    for n in range(1, 4):
        e = next_event(frames_a)
        assert e.seq == n and e.value.shape == (64, 48) and e.value.dtype == np.uint16
        assert (e.value == n).all()
        assert e.value.flags.aligned and e.value.flags.writeable
        frame_b = next(stream_b)
        assert frame_b.shape == (64, 48) and (frame_b == n).all()
    stream_b.close()
    assert list(stream_b) == []


def test_topics_are_described_and_unknown_ones_refused(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    assert [t["name"] for t in echo.topics()] == ["numbers", "frames"]
    with pytest.raises(labhost.NoSuchTopicError, match="numbers, frames"):
        echo.subscribe("nope")
    with pytest.raises(labhost.NoSuchServiceError):
        echo.connection.subscribe("ghost", "numbers")
    with pytest.raises(labhost.BadMessageError, match="queue"):
        echo.subscribe("numbers", queue=0)
    with pytest.raises(labhost.BadMessageError, match="max_rate"):
        echo.subscribe("numbers", max_rate=-1)
    with pytest.raises(TypeError, match="queue"):
        echo.subscribe("numbers", queue=1.5)
    with pytest.raises(labhost.NoSuchSubscriptionError):
        expect(echo.connection._request_value(protocol.UNSUBSCRIBE, protocol.unsubscribe(99)),
               protocol.RESULT)
    assert echo.add(1, 2) == 3  # none of it hurt the connection


# ------------------------------------------------------------------ sessions


def test_subscriptions_go_on_across_a_resume(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    numbers = echo.subscribe("numbers", queue=64)
    echo.emit(3)
    assert [next_event(numbers).value for _ in range(3)] == [1, 2, 3]
    assert echo.connection.resume() is True  # the link dropped, the session resumed
    echo.emit(4)
    for i in range(4, 8):
        e = next_event(numbers)
        assert (e.value, e.seq, e.subscription) == (i, i, numbers.id)


def test_a_subscriber_that_finds_the_link_broken_resumes_and_gets_what_was_published(echo_daemon, connect):
    relay = Relay(echo_daemon.port)
    try:
        subscriber = connect("lab://127.0.0.1:%d/echo" % relay.port, heartbeats=False)
        publisher = connect(echo_daemon.address("echo"))
        numbers = subscriber.subscribe("numbers", queue=64)
        assert relay.accepted.acquire(timeout=10)
        relay.cut()  # a network failure: the daemon keeps the session, and queues its events
        assert publisher.emit(5) == 5
        # next() reads the reset, reconnects through the relay and resumes the session. The
        # event the daemon was writing when it met the broken link may be lost with it.
        seen = []
        while not seen or seen[-1] < 5:
            seen.append(next_event(numbers).seq)
            assert len(seen) <= 5
        assert seen in ([1, 2, 3, 4, 5], [2, 3, 4, 5])
        assert relay.accepted.acquire(timeout=10)
        assert subscriber.connection.resumed
    finally:
        relay.close()


def test_subscriptions_end_when_the_session_could_not_be_resumed(daemons, connect):
    d = daemons(ECHO, lease_s=1.0)
    relay = Relay(d.port)
    try:
        subscriber = connect("lab://127.0.0.1:%d/echo" % relay.port, heartbeats=False)
        watcher = connect(d.address("echo"))
        numbers = subscriber.subscribe("numbers", queue=64)
        frames = subscriber.subscribe("frames")
        assert relay.accepted.acquire(timeout=10)
        relay.cut()
        eventually(lambda: subscribers(watcher.connection, "numbers")[0] == 0,
                   "the daemon ended the silent session")
        with pytest.raises(labhost.ConnectionLostError, match="no longer had this session"):
            numbers.next(EVENT_TIMEOUT)  # reconnects: a new session, without subscriptions
        assert not subscriber.connection.resumed
        with pytest.raises(labhost.ConnectionLostError, match="no longer had this session"):
            list(frames)  # the other one ended too, and iterating it says why
        assert subscriber.add(1, 1) == 2  # the connection itself goes on, in its new session
    finally:
        relay.close()


def test_without_reconnect_a_broken_link_ends_the_subscriptions(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"), reconnect=False)
    numbers = echo.subscribe("numbers")
    mux = echo.connection._mux
    with mux.cond:
        mux.break_link(labhost.ConnectionLostError("cut by the test"))
    with pytest.raises(labhost.ConnectionLostError, match="cut by the test"):
        numbers.next(EVENT_TIMEOUT)


def test_a_subscription_ends_with_its_connection(echo_daemon, connect):
    watcher = connect(echo_daemon.address("echo"))
    echo = connect(echo_daemon.address("echo"))
    numbers = echo.subscribe("numbers")
    assert subscribers(watcher.connection, "numbers")[0] == 1
    echo.close()
    with pytest.raises(labhost.ConnectionLostError, match="closed this connection"):
        numbers.next(EVENT_TIMEOUT)
    eventually(lambda: subscribers(watcher.connection, "numbers")[0] == 0, "the session ended")
    numbers.close()  # nothing to tell anyone


def test_a_subscription_nobody_references_is_unsubscribed(echo_daemon, connect):
    echo = connect(echo_daemon.address("echo"))
    first = echo.stream("numbers")
    echo.emit(1)
    for _ in first:  # a stream left by break, then dropped
        break
    del first  # collected: its events are dropped at once; the daemon is told before the next subscribe
    second = echo.stream("numbers")
    eventually(lambda: subscribers(echo.connection, "numbers")[0] == 1, "the first one was unsubscribed")
    del second  # ... or with the next heartbeat
    echo.connection._session.beat()
    eventually(lambda: subscribers(echo.connection, "numbers")[0] == 0, "the second one was unsubscribed")
    assert echo.connection._session.events.states == {}


# ------------------------------------------------------------------ subscribers that die or stop

SUBSCRIBER = textwrap.dedent(r"""
    import sys
    sys.path.insert(0, sys.argv[2])
    import labhost
    echo = labhost.connect(sys.argv[1], timeout=60, client_name="subscriber@test")
    frames = echo.subscribe("frames", queue=int(sys.argv[3]))
    print("subscribed", flush=True)
    last = int(sys.argv[4])
    for event in frames:  # until the frame numbered `last`
        if event.seq >= last:
            print("done", event.seq, frames.dropped, flush=True)
            break
""")


def start_subscriber(daemon, queue, last):
    child = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, daemon.address("echo"), CLIENT_DIR, str(queue), str(last)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    line = child.stdout.readline()
    assert line == b"subscribed\n", child.stderr.read()
    return child


def resident_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_a_subscriber_killed_mid_stream_leaves_the_daemon_serving(daemons, connect):
    d = daemons(ECHO, lease_s=1.0)  # the killed one's link resets: its session ends with the lease
    echo = connect(d.address("echo"))
    doomed = start_subscriber(d, 16, 10 ** 9)
    try:
        assert subscribers(echo.connection, "frames")[0] == 1
        assert echo.emit_frames(20, 512, 512) == 20
        doomed.kill()
        doomed.wait(30)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(30)
        doomed.stdout.close()
        doomed.stderr.close()
    eventually(lambda: subscribers(echo.connection, "frames")[0] == 0, "its session ended")
    mine = echo.subscribe("frames", queue=4)
    echo.emit_frames(1, 8, 8)
    assert next_event(mine).value.shape == (8, 8)
    assert d.running()


def test_a_stopped_subscriber_costs_the_others_nothing_and_the_daemons_memory_stays_bounded(daemons, connect):
    # 2 MiB frames; the daemon keeps at most 8 MiB of them for each subscription.
    d = daemons(ECHO, subscriber_queue_bytes=8 << 20, lease_s=120)
    frames_published = 120  # 240 MiB in all
    fast = connect(d.address("echo"))
    events = fast.subscribe("frames", queue=4)
    stopped = start_subscriber(d, 1024, frames_published)
    try:
        assert subscribers(fast.connection, "frames")[0] == 2
        os.kill(stopped.pid, signal.SIGSTOP)
        rss_before = resident_kib(d.process.pid)
        for n in range(1, frames_published + 1):
            assert fast.emit_frames(1, 1024, 1024) == 1
            e = next_event(events)  # taken before the next: this subscriber keeps up
            assert (e.seq, e.dropped) == (n, 0)
            assert e.value.shape == (1024, 1024) and e.value[0, 0] == n and e.value[-1, -1] == n
        grown_mib = max(0, resident_kib(d.process.pid) - rss_before) / 1024
        assert grown_mib < 64, "the daemon grew by %d MiB" % grown_mib
        assert events.dropped == 0
        # Woken, the stopped one gets the newest frames and is told what it lost.
        os.kill(stopped.pid, signal.SIGCONT)
        out, err = stopped.communicate(timeout=60)
        words = out.split()
        assert words[:2] == [b"done", str(frames_published).encode()], err
        assert int(words[2]) > 0  # frames dropped for it
    finally:
        if stopped.poll() is None:
            os.kill(stopped.pid, signal.SIGCONT)
            stopped.kill()
            stopped.communicate(timeout=30)


# ------------------------------------------------------------------ the simulated instruments


def test_the_simulated_instruments_publish(daemons, connect):
    d = daemons({"camera": {"driver": "sim_camera",
                            "params": {"width": 32, "height": 16, "frame_rate_hz": 200}},
                 "powermeter": {"driver": "sim_powermeter", "params": {"rate_hz": 100}},
                 "stage": {"driver": "sim_stage", "params": {"speed_mm_s": 100}}},
                server_type="threaded", pool_size=4)
    daemon = connect(d.address())
    y = np.arange(16, dtype=np.int64)[:, None]
    x = np.arange(32, dtype=np.int64)[None, :]
    with daemon["camera"].subscribe("frames", queue=4) as frames:
        for _ in range(3):
            e = next_event(frames)
            # pixel (y, x) of the n-th streamed frame = (x + y + n) mod 65536, n = seq
            assert e.value.shape == (16, 32) and e.value.dtype == np.uint16
            assert np.array_equal(e.value, ((x + y + e.seq) % 65536).astype(np.uint16))
    with daemon["powermeter"].subscribe("power") as power:
        reading = next_event(power).value
        assert isinstance(reading, float) and abs(reading - 1e-3) < 1e-4
    stage = daemon["stage"]
    with stage.subscribe("position", queue=64) as position:
        assert stage.move_to(20.0) == 20.0
        last = -1.0
        for _ in range(1000):
            p = next_event(position).value
            assert p >= last
            last = p
            if p == 20.0:
                break
        assert last == 20.0


def test_the_camera_streams_2048_by_2048_frames(sim_daemon, connect):
    camera = connect(sim_daemon.address("camera"))
    y = np.arange(2048, dtype=np.int64)[:, None]
    x = np.arange(2048, dtype=np.int64)[None, :]
    with camera.subscribe("frames", queue=2, max_rate=30) as frames:
        e = next_event(frames)
        assert e.value.shape == (2048, 2048) and e.value.dtype == np.uint16
        assert np.array_equal(e.value, ((x + y + e.seq) % 65536).astype(np.uint16))
    count = 0
    for image in camera.stream("frames", max_rate=30):
        assert image.shape == (2048, 2048) and image.dtype == np.uint16
        count += 1
        if count == 3:
            break


# ------------------------------------------------------------------ what a fake daemon does


def subscribing_daemon(fake, before_reply):
    """A version-2 fake daemon that answers subscribe with subscription 7, after the frames
    before_reply() gives."""
    def script(rid, req):
        if isinstance(req, dict) and "topic" in req:
            return before_reply() + result(rid, {"subscription": 7, "service": req["service"],
                                                 "topic": req["topic"], "type": "int64",
                                                 "queue": req["queue"], "max_rate": 0.0})
        return result(rid, None)
    return fake(script, version=2)


def test_events_that_come_before_the_subscribe_reply_are_kept(fake):
    d = subscribing_daemon(fake, lambda: b"".join(event(7, n, n) for n in range(1, 301)))
    with connection_to(d) as c:
        numbers = c.subscribe("x", "numbers", queue=1024)
        seen = [numbers.next(0).value for _ in range(256)]
        assert seen == list(range(1, 257))  # the first 256 were kept
        assert numbers.next(0) is None and numbers.dropped == 44  # the rest counted as dropped
        request = d.requests[0]
        assert request[0] == protocol.SUBSCRIBE
        assert request[2] == {"service": "x", "topic": "numbers", "queue": 1024, "max_rate": 0.0}


def test_a_malformed_event_ends_its_subscription(fake):
    d = subscribing_daemon(fake, lambda: event(7, 1, "one") + frame(protocol.EVENT, 7, b"\x0a"))
    with connection_to(d) as c:
        numbers = c.subscribe("x", "numbers")
        assert numbers.next(0).value == "one"
        with pytest.raises(labhost.BadFrameError, match="unknown value tag"):
            numbers.next(0)
        assert c.call("x", "y") is None  # the connection is fine


def test_subscribing_on_a_version_1_session_is_refused_by_the_client(fake):
    d = fake(lambda rid, req: result(rid, "fine"))  # welcomes version 1
    with connection_to(d) as c:
        assert c.protocol_version == 1
        with pytest.raises(labhost.UnsupportedVersionError, match="protocol version 1: no events"):
            c.subscribe("x", "numbers")
        assert d.requests == []  # nothing was sent
        assert c.call("x", "y") == "fine"


def test_hello_offers_versions_1_to_2(fake, monkeypatch):
    d = fake(lambda rid, req: result(rid, "fine"), version=2)
    hellos = []
    real = protocol.Handshake.hello_frame

    def recording(self):
        hellos.append(dict(self.hello))
        return real(self)
    monkeypatch.setattr(protocol.Handshake, "hello_frame", recording)
    with connection_to(d) as c:
        assert c.protocol_version == 2
    assert (hellos[0]["min_version"], hellos[0]["max_version"]) == (1, 2)

