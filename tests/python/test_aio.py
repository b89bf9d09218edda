"""labhost.aio, the asyncio client, through real daemons (and fake ones for what a real daemon
does not do on demand): many calls in flight on one connection, proxies, streams and
subscriptions, oneway calls, locks with the lock-wait rule, heartbeats, the shared secret,
resuming after a broken link, and the rules of docs/clients.md. TLS is in test_tls.py.

Each test runs its coroutine with asyncio.run, bounded by TEST_TIMEOUT; every wait inside
is for an event (a reply, an event frame, the daemon's own answer), bounded too."""

import asyncio
import inspect
import logging
import threading

import numpy as np
import pytest

import labhost
import labhost.aio
from conftest import LEASE_S, LOCK_SERVICES
from daemon_process import DaemonProcess, write_secret_file
from frames import CloseAfter, event, frame, result
from labhost import codec, protocol
from relay import Relay
from test_locks import goodbye_logged

TEST_TIMEOUT = 120.0
EVENT_TIMEOUT = 30.0
ECHO = {"echo": {"driver": "test_echo"}, "echo2": {"driver": "test_echo"}}


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TEST_TIMEOUT))


def options(**more):
    more.setdefault("timeout", 60.0)
    more.setdefault("client_name", "pytest@aio")
    return more


async def next_event(subscription):
    e = await subscription.next(EVENT_TIMEOUT)
    assert e is not None, "no event within %g s" % EVENT_TIMEOUT
    return e


async def subscribers(connection, topic, service="echo"):
    return [int(n) for n in await connection.call(service, "demand", topic)]


async def eventually(predicate, what, timeout=30.0):
    """Awaits the coroutine function `predicate` until it gives True (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "after %g s: %s" % (timeout, what)
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------ calls


def test_a_hundred_calls_in_flight_at_once_on_one_connection(sim_daemon):
    async def body():
        async with labhost.aio.AsyncConnection("127.0.0.1", sim_daemon.port, **options()) as conn:
            assert conn.protocol_version == 2
            # A call blocked in the driver is in flight the whole time.
            gated = asyncio.ensure_future(conn.call("echo", "wait_gate", "aio-hundred"))
            await conn.call("echo2", "wait_entered", "aio-hundred", 1)
            sums = await asyncio.gather(*(conn.call("echo2", "add", i, 1000) for i in range(100)))
            assert sums == [i + 1000 for i in range(100)]
            assert not gated.done()
            await conn.call("echo2", "open_gate", "aio-hundred")
            assert await gated == 1
            # Replies come as they are ready, whatever the order sent.
            mixed = await asyncio.gather(conn.call("camera", "grab"), conn.call("laser", "wavelength"),
                                         conn.call("echo", "echo", {"k": [1, 2]}))
            assert mixed[0].shape == (2048, 2048) and mixed[1] == 1550.0 and mixed[2] == {"k": [1, 2]}
    run(body())


def test_an_async_proxy_feels_like_the_sync_one(sim_daemon):
    async def body():
        laser = await labhost.aio.connect(sim_daemon.address("laser"), **options())
        try:
            assert isinstance(laser, labhost.aio.AsyncServiceProxy)
            assert await laser.wavelength() == 1550.0
            await laser.set_wavelength(nm=1560.5)
            assert await laser.wavelength() == 1560.5
            assert await laser.call("wavelength") == 1560.5
            with pytest.raises(labhost.DriverError, match="outside the tuning range"):
                await laser.set_wavelength(1700)
            await laser.set_wavelength(1550.0)
            assert str(inspect.signature(laser.set_wavelength)) == "(nm: float64) -> None"
            assert inspect.iscoroutinefunction(laser.wavelength)
            assert "set_wavelength" in dir(laser) and "stream" in dir(laser)
            with pytest.raises(AttributeError, match="its methods: "):
                laser.no_such_method
            assert (await laser.describe())["driver"] == "sim_laser"
            assert "AsyncServiceProxy" in repr(laser)
        finally:
            await laser.close()
        assert laser.connection.closed
        daemon = await labhost.aio.connect(sim_daemon.address(), **options())
        async with daemon:
            assert "camera" in await daemon.services()
            echo = await daemon.service("echo")
            assert echo is await daemon.service("echo") and echo.connection is daemon.connection
            assert await echo.add(2, 3) == 5 and await daemon.ping() >= 0
            frame = await echo.frame(2, 3)
            assert frame.shape == (2, 3) and frame.tolist() == [[0, 1, 2], [3, 4, 5]]
            with pytest.raises(labhost.NoSuchServiceError):
                await daemon.service("ghost")
        conn = await labhost.aio.connect_daemon(sim_daemon.address(), **options())
        assert isinstance(conn, labhost.aio.AsyncConnection)
        assert await conn.call("echo", "add", 40, b=2) == 42
        await conn.close()
        with pytest.raises(labhost.ConnectionLostError, match="closed"):
            await conn.call("echo", "add", 1, 1)
    run(body())


def test_a_call_that_times_out_leaves_the_connection_usable(sim_daemon):
    async def body():
        conn = await labhost.aio.connect_daemon(sim_daemon.address(), **options(timeout=0.3))
        try:
            with pytest.raises(labhost.LabhostTimeoutError, match="no reply within 0.3 s"):
                await conn.call("echo", "wait_gate", "aio-timeout")
            await conn.call("echo2", "wait_entered", "aio-timeout", 1)
            await conn.call("echo2", "open_gate", "aio-timeout")  # its late reply is dropped
            assert await conn.call("echo", "add", 1, 2) == 3
        finally:
            await conn.close()
    run(body())


def test_requests_in_flight_fail_when_the_connection_closes(sim_daemon, daemons):
    async def body():
        conn = await labhost.aio.connect_daemon(sim_daemon.address(), **options())
        blocked = asyncio.ensure_future(conn.call("echo", "wait_gate", "aio-close"))
        await conn.call("echo2", "wait_entered", "aio-close", 1)
        await conn.close()
        with pytest.raises(labhost.ConnectionLostError, match="closed this connection"):
            await blocked
        await conn.close()  # idempotent
        other = await labhost.aio.connect_daemon(sim_daemon.address(), **options())
        await other.call("echo2", "open_gate", "aio-close")
        await other.close()
    run(body())
    assert goodbye_logged(sim_daemon, "pytest@aio")


# ------------------------------------------------------------------ events


@pytest.fixture
def echo_daemon():
    d = DaemonProcess(ECHO, server_type="threaded", pool_size=4, lease_s=30)
    yield d
    d.stop()


def test_events_in_order_and_iteration_ended_by_close(echo_daemon):
    async def body():
        echo = await labhost.aio.connect(echo_daemon.address("echo"), **options())
        async with echo:
            numbers = await echo.subscribe("numbers", queue=100)
            assert (numbers.topic, numbers.type) == ("numbers", "int64")
            assert (await subscribers(echo.connection, "numbers"))[0] == 1
            assert await echo.emit(50) == 50
            for i in range(1, 51):
                e = await next_event(numbers)
                assert (e.value, e.seq, e.dropped, e.subscription) == (i, i, 0, numbers.id)
            assert await numbers.next(0) is None

            seen = []

            async def consume():
                async for e in numbers:
                    seen.append(e.value)
            consumer = asyncio.ensure_future(consume())
            await echo.emit(3)
            await eventually(lambda: _true(len(seen) == 3), "three more events")
            await numbers.close()
            await asyncio.wait_for(consumer, EVENT_TIMEOUT)  # the loop ended
            assert seen == [51, 52, 53]
            assert (await subscribers(echo.connection, "numbers"))[0] == 0
    run(body())


async def _true(value):
    return value


def test_frames_stream_with_async_for(echo_daemon):
    async def body():
        echo = await labhost.aio.connect(echo_daemon.address("echo"), **options())
        async with echo:
            async with echo.stream("frames", queue=8) as frames:  # subscribed on entry
                assert await echo.emit_frames(3, 64, 48) == 3
                n = 0
                async for image in frames:
                    n += 1
                    assert image.shape == (64, 48) and image.dtype == np.uint16 and (image == n).all()
                    if n == 3:
                        break
            assert frames.subscription.closed
            # Many subscribers, one publication.
            other = await labhost.aio.connect(echo_daemon.address("echo"), **options())
            async with other:
                a = await echo.subscribe("frames", queue=4)
                b = await other.subscribe("frames", queue=4)
                await echo.emit_frames(1, 8, 8)
                for s in (a, b):
                    e = await next_event(s)
                    assert e.seq == 4 and e.value.shape == (8, 8)
    run(body())


def test_the_camera_streams_2048_by_2048_frames(sim_daemon):
    async def body():
        camera = await labhost.aio.connect(sim_daemon.address("camera"), **options())
        async with camera:
            y = np.arange(2048, dtype=np.int64)[:, None]
            x = np.arange(2048, dtype=np.int64)[None, :]
            async with await camera.subscribe("frames", queue=2, max_rate=30) as frames:
                e = await next_event(frames)
                assert e.value.shape == (2048, 2048) and e.value.flags.aligned
                assert np.array_equal(e.value, ((x + y + e.seq) % 65536).astype(np.uint16))
            count = 0
            async for image in camera.stream("frames", max_rate=30):
                assert image.shape == (2048, 2048) and image.dtype == np.uint16
                count += 1
                if count == 3:
                    break
    run(body())


def test_subscriptions_go_on_across_a_resume_and_end_with_the_session(daemons):
    d = daemons(ECHO, lease_s=1.0)
    relay = Relay(d.port)

    async def body():
        conn = await labhost.aio.connect_daemon("lab://127.0.0.1:%d" % relay.port,
                                                **options(heartbeats=False))
        watcher = await labhost.aio.connect_daemon(d.address(), **options())
        try:
            numbers = await conn.subscribe("echo", "numbers", queue=64)
            await conn.call("echo", "emit", 2)
            assert [(await next_event(numbers)).value for _ in range(2)] == [1, 2]
            assert await conn.resume() is True  # dropped and resumed: the subscription goes on
            await conn.call("echo", "emit", 2)
            assert [(await next_event(numbers)).seq for _ in range(2)] == [3, 4]
            # A network failure; the subscriber repairs the link itself.
            relay.cut()
            await watcher.call("echo", "emit", 3)
            seen = []
            while not seen or seen[-1] < 7:
                seen.append((await next_event(numbers)).seq)
                assert len(seen) <= 3
            assert seen in ([5, 6, 7], [6, 7])  # the one being written when the link broke may be lost
            # Silent for longer than the lease: the session is gone, and with it the subscription.
            relay.cut()
            await eventually(lambda: _subscribers_are(watcher, 0), "the session ended")
            with pytest.raises(labhost.ConnectionLostError, match="no longer had this session"):
                await numbers.next(EVENT_TIMEOUT)
            assert not conn.resumed and await conn.call("echo", "add", 1, 1) == 2
        finally:
            await conn.close()
            await watcher.close()
    try:
        run(body())
    finally:
        relay.close()


async def _subscribers_are(connection, count):
    return (await subscribers(connection, "numbers"))[0] == count


def test_events_that_come_before_the_subscribe_reply_are_kept(fake):
    def script(rid, req):
        if isinstance(req, dict) and "topic" in req:
            return b"".join(event(7, n, n) for n in (1, 2, 3)) + result(
                rid, {"subscription": 7, "service": "x", "topic": "t", "type": "int64",
                      "queue": 16, "max_rate": 0.0})
        return result(rid, None)

    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options()).open()
        try:
            numbers = await conn.subscribe("x", "t")
            assert [(await numbers.next(0)).value for _ in range(3)] == [1, 2, 3]
        finally:
            await conn.close()
    d = fake(script, version=2)
    run(body())


def test_subscribing_on_a_version_1_session_is_refused_by_the_client(fake):
    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options()).open()
        try:
            assert conn.protocol_version == 1
            with pytest.raises(labhost.UnsupportedVersionError, match="no events"):
                await conn.subscribe("x", "numbers")
            assert d.requests == []
        finally:
            await conn.close()
    d = fake(lambda rid, req: result(rid, "fine"))
    run(body())


# ------------------------------------------------------------------ oneway


def test_oneway_calls_run_in_order_and_failures_are_reported(sim_daemon):
    reported = []

    async def body():
        echo = await labhost.aio.connect(sim_daemon.address("echo2"),
                                         **options(on_oneway_error=reported.append))
        async with echo:
            before = len(await echo.recorded())
            for i in range(300):
                assert await echo.record(i) is None  # marked oneway: written, not answered
            assert (await echo.recorded())[before:] == list(range(300))
            await echo.call_oneway("fail", "the shutter jammed")
            await echo.add(1, 1)  # the error came with or before this reply: the link is read in order
            assert [type(e) for e in reported] == [labhost.DriverError]
            assert "the shutter jammed" in reported[0].message
            assert echo.connection.oneway_failures == 1
    run(body())


def test_a_failed_oneway_call_is_a_warning_by_default(sim_daemon, caplog):
    async def body():
        conn = await labhost.aio.connect_daemon(sim_daemon.address(), **options())
        async with conn:
            await conn.call_oneway("echo", "fail", "lamp burnt out")
            await conn.call("echo", "add", 1, 1)
            assert conn.oneway_failures == 1
    with caplog.at_level(logging.WARNING, logger="labhost"):
        run(body())
    assert "a oneway call failed: driver_error: lamp burnt out" in caplog.text


# ------------------------------------------------------------------ locks, heartbeats, sessions


def test_a_lock_waits_for_the_daemons_answer_beyond_the_reply_timeout(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    holder.lock()

    async def body():
        laser = await labhost.aio.connect(lock_daemon.address("laser"), **options(timeout=0.2))
        async with laser:
            # The daemon answers when the wait of 1 s runs out, long after the 0.2 s timeout.
            with pytest.raises(labhost.LockedError, match="after waiting 1000 ms"):
                await laser.lock(wait=1.0)
            await asyncio.get_running_loop().run_in_executor(None, holder.unlock)
            async with laser.locked(wait=1.0) as status:
                assert status.yours and (await laser.lock_status()).yours
                assert await laser.wavelength() == 1550.0
            assert not (await laser.lock_status()).locked
            statuses = await laser.connection.lock_status()
            assert [s.service for s in statuses] == sorted(LOCK_SERVICES)
    run(body())


def test_heartbeats_keep_an_idle_session_and_its_lock(lock_daemon, connect):
    other = connect(lock_daemon.address("laser"))

    async def body():
        laser = await labhost.aio.connect(lock_daemon.address("laser"), **options())
        async with laser:
            assert laser.connection.lease == LEASE_S
            await laser.lock()
            # Idle for three leases while another session waits for the lock: the heartbeat
            # task keeps the session, so the daemon refuses the other when the wait runs out.
            with pytest.raises(labhost.LockedError):
                await asyncio.get_running_loop().run_in_executor(None, other.lock, 3 * LEASE_S)
            assert (await laser.lock_status()).yours
    run(body())


def test_resume_keeps_the_session_and_its_lock_and_a_cut_link_is_resumed(lock_daemon, connect):
    relay = Relay(lock_daemon.port)
    other = connect(lock_daemon.address("laser"))

    async def body():
        laser = await labhost.aio.connect("lab://127.0.0.1:%d/laser" % relay.port,
                                          **options(heartbeats=False))
        async with laser:
            await laser.lock()
            token = laser.connection.session_token
            assert await laser.connection.resume() is True
            assert laser.connection.session_token == token and (await laser.lock_status()).yours
            relay.cut()  # the next call finds the link broken and resumes the session
            mux = laser.connection._session.mux
            await eventually(lambda: _true(mux.broken is not None), "the reset reached the client")
            assert await laser.wavelength() == 1550.0
            assert laser.connection.resumed and laser.connection.session_token == token
            with pytest.raises(labhost.LockedError):
                await asyncio.get_running_loop().run_in_executor(None, other.wavelength)
    try:
        run(body())
    finally:
        relay.close()


def test_the_shared_secret(daemons, tmp_path):
    secret_file = write_secret_file(str(tmp_path), "s3cret aio")
    d = daemons(LOCK_SERVICES, host_keys={"auth": {"secret_file": secret_file}}, lockable=True,
                lease_s=LEASE_S)

    async def body():
        laser = await labhost.aio.connect(d.address("laser"), **options(secret="s3cret aio"))
        async with laser:
            assert await laser.wavelength() == 1550.0
            assert await laser.connection.resume() is True  # proves it again
        with pytest.raises(labhost.AuthFailedError, match="could not prove it knows the secret"):
            await labhost.aio.connect(d.address("laser"), **options(secret="wrong"))
        with pytest.raises(labhost.AuthFailedError, match="requires a secret"):
            await labhost.aio.connect(d.address("laser"), **options())
    run(body())


def test_a_restarted_daemon_is_reconnected_with_a_new_session(daemons, caplog):
    first = daemons(ECHO)
    address = "127.0.0.1:%d" % first.port

    async def body():
        conn = await labhost.aio.connect_daemon(first.address(), **options(heartbeats=False))
        try:
            numbers = await conn.subscribe("echo", "numbers")
            token = conn.session_token
            first.kill()
            with pytest.raises(labhost.ConnectionLostError):
                await conn.call("echo", "add", 1, 1)  # nothing listens: typed
            await asyncio.get_running_loop().run_in_executor(None, lambda: daemons(ECHO, address=address))
            assert await conn.call("echo", "add", 1, 1) == 2
            assert not conn.resumed and conn.session_token != token
            with pytest.raises(labhost.ConnectionLostError, match="no longer had this session"):
                await numbers.next(EVENT_TIMEOUT)
        finally:
            await conn.close()
    with caplog.at_level(logging.WARNING, logger="labhost"):
        run(body())
    assert "could not be resumed" in caplog.text


# ------------------------------------------------------------------ rules against a fake daemon


def test_a_request_on_an_idle_link_the_daemon_closed_goes_on_a_new_connection(fake, monkeypatch):
    from labhost.aio import session
    monkeypatch.setattr(session, "IDLE_CHECK_AFTER", 0.0)

    def script(rid, req):
        if req["method"] == "first":
            return CloseAfter(result(rid, "first"))  # then the daemon closes the idle link
        return result(rid, req["method"])

    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options(heartbeats=False)).open()
        try:
            assert await conn.call("x", "first") == "first"
            await eventually(lambda: _true(len(d.connections) == 1 and _closed_by_daemon(d)),
                             "the daemon closed the link")
            assert await conn.call("x", "second") == "second"  # not connection_lost
            assert len(d.connections) == 2
            assert [r[2]["method"] for r in d.requests] == ["first", "second"]
        finally:
            await conn.close()
    d = fake(script)
    run(body())


def _closed_by_daemon(d):
    return d.connections[0].fileno() == -1


def test_a_request_whose_link_broke_before_it_went_out_is_sent_once_on_a_new_connection(fake, monkeypatch):
    import socket
    from labhost.aio import session
    monkeypatch.setattr(session, "IDLE_CHECK_AFTER", float("inf"))  # found only by sending

    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options(heartbeats=False)).open()
        try:
            assert await conn.call("x", "first") == "first"
            conn._session.mux.link.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
            assert await conn.call("x", "second") == "second"
            assert len(d.connections) == 2
            assert [r[2]["method"] for r in d.requests] == ["first", "second"]  # each sent once
        finally:
            await conn.close()
    d = fake(lambda rid, req: result(rid, req["method"]))
    run(body())


def test_a_connection_level_error_fails_every_waiting_request_then_reconnects(fake):
    held = threading.Event()

    def script(rid, req):
        if req["method"] == "hold":
            held.set()
            return b""
        if req["method"] == "refuse":
            return CloseAfter(frame(protocol.ERROR, 0, codec.encode(
                {"code": 8, "name": "busy", "message": "too many requests"})))
        return result(rid, "fine")

    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options(heartbeats=False)).open()
        try:
            holding = asyncio.ensure_future(conn.call("x", "hold"))
            await eventually(lambda: _true(held.is_set()), "the fake holds the call")
            with pytest.raises(labhost.BusyError, match="too many requests"):
                await conn.call("x", "refuse")
            with pytest.raises(labhost.BusyError):
                await holding
            assert await conn.call("x", "again") == "fine"  # busy is no refusal: reconnected
            assert len(d.connections) == 2
        finally:
            await conn.close()
    d = fake(script)
    run(body())


def test_heartbeats_ping_a_third_of_the_lease_after_the_last_frame(fake):
    def script(rid, req):
        if req is None:
            return frame(protocol.PONG, rid, codec.encode(None))
        return result(rid, "fine")

    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options()).open()
        try:
            assert conn.lease == 0.3
            await eventually(lambda: _true(any(r[0] == protocol.PING for r in d.requests)),
                             "a heartbeat", timeout=10)
            assert await conn.call("x", "y") == "fine"
        finally:
            await conn.close()
    d = fake(script, lease_ms=300)
    run(body())


def test_a_refusal_on_reconnecting_is_not_retried_on_its_own(fake):
    refusing = threading.Event()

    def answer_hello(rid):
        if refusing.is_set():
            return frame(protocol.ERROR, rid, codec.encode(
                {"code": 2, "name": "unsupported_version", "message": "version 3 only"}))
        return None

    async def body():
        conn = await labhost.aio.AsyncConnection("127.0.0.1", d.port, **options(heartbeats=False)).open()
        try:
            assert await conn.call("x", "y") == "fine"
            refusing.set()
            conn._session.mux.break_link(labhost.ConnectionLostError("cut by the test"))
            with pytest.raises(labhost.UnsupportedVersionError, match="version 3 only"):
                await conn.call("x", "y")
            with pytest.raises(labhost.UnsupportedVersionError):
                await conn.call("x", "y")  # no second try on its own
            assert len(d.connections) == 2
            refusing.clear()
            assert await conn.resume() is False  # asked for: tried again
            assert await conn.call("x", "y") == "fine"
        finally:
            await conn.close()
    d = fake(lambda rid, req: result(rid, "fine"), answer_hello=answer_hello)
    run(body())


def test_bad_options_fail_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(labhost.AuthFailedError, match="cannot read"):
        labhost.aio.AsyncConnection("127.0.0.1", 1)
    monkeypatch.delenv("LABHOST_SECRET_FILE")
    with pytest.raises(labhost.BadAddressError):
        run(labhost.aio.connect("lab://127.0.0.1"))
    with pytest.raises(labhost.ConnectionLostError, match="cannot connect"):
        run(labhost.aio.connect_daemon("lab://127.0.0.1:1", connect_timeout=5))
