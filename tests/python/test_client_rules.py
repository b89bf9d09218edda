"""The rules of docs/clients.md, one section per rule: against fake daemons played by hand
(frames.FakeDaemon) for what a real daemon cannot be made to do, else against real ones.

Pinned elsewhere as well: rule 1's late reply that is dropped (test_errors.py,
test_hostile_daemon.py), rule 3's resume after a blip and its end after close()
(test_locks.py, test_threads.py, test_tls.py), rule 4's call in flight when the daemon dies
(test_reconnect.py), rule 6's idle holder that keeps its lock (test_locks.py), rule 8's
order of the secret's sources (test_auth.py) and its files (test_conformance.py)."""

import select
import socket
import threading
import time

import pytest

import labhost
from frames import CloseAfter, connection_to, frame, result
from labhost import codec, protocol, transport

JOIN_TIMEOUT = 30.0


def error_frame(request_id, code, name, message):
    return frame(protocol.ERROR, request_id, codec.encode({"code": code, "name": name, "message": message}))


def wait_for_eof(c):
    """Waits until the daemon's close has reached the client's socket (an event, not a guess)."""
    assert select.select([c._io.sock], [], [], 10.0)[0], "the daemon did not close the link"


@pytest.fixture
def idle_at_once(monkeypatch):
    """Links count as idle right after a frame went out, not only 5 ms later, so that the
    idle-link check runs before the next request without waiting."""
    monkeypatch.setattr(transport, "IDLE_CHECK_AFTER", 0.0)


# ------------------------------------------------------------------ 1. timeouts


def stalled_first_reply(big):
    """A script whose first reply stops inside its frame (in the header, or inside a payload
    too large for the receive buffer) and never goes on; later requests are echoed."""
    calls = []

    def script(rid, req):
        calls.append(rid)
        if len(calls) == 1:
            if big:
                return result(rid, bytes(1 << 20))[:5000]
            return result(rid, "never whole")[:10]
        return result(rid, req["args"])
    return script


@pytest.mark.parametrize("big", [False, True], ids=["in the header", "inside a large payload"])
def test_a_deadline_inside_a_reply_frame_times_out_and_drops_the_link(fake, big):
    d = fake(stalled_first_reply(big))
    with connection_to(d, timeout=0.3, heartbeats=False) as c:
        with pytest.raises(labhost.LabhostTimeoutError, match="dropped inside a frame"):
            c.call("x", "stalls")
        # The stream was out of step: the link went (as connection_lost, so it is resumed),
        # and the next call goes out on a new one.
        assert c.call("x", "echo", [1, 2], timeout=30) == [1, 2]
        assert len(d.connections) == 2

    d = fake(stalled_first_reply(big))
    with connection_to(d, timeout=0.3, heartbeats=False, reconnect=False) as c:
        with pytest.raises(labhost.LabhostTimeoutError):
            c.call("x", "stalls")
        with pytest.raises(labhost.ConnectionLostError, match="the link was dropped"):
            c.call("x", "echo", [1], timeout=30)


# ------------------------------------------------------------------ 2. waiting for a lock


def test_a_lock_waits_for_the_daemons_answer_beyond_the_reply_timeout(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    waiter = connect(lock_daemon.address("laser"), timeout=0.2)
    holder.lock()
    # The daemon answers when the wait of 1 s runs out, long after the 0.2 s reply timeout.
    with pytest.raises(labhost.LockedError, match="after waiting 1000 ms"):
        waiter.lock(wait=1.0)
    holder.unlock()
    assert waiter.lock(wait=1.0).yours


# ------------------------------------------------------------------ 3. reconnecting


def test_a_break_by_unsupported_version_is_not_resumed_on_its_own(fake, idle_at_once):
    refusing = threading.Event()

    def answer_hello(rid):
        if refusing.is_set():
            return error_frame(rid, 2, "unsupported_version", "this daemon speaks version 2 only")
        return None  # the welcome

    def script(rid, req):
        if req["method"] == "last":
            return CloseAfter(result(rid, "last"))  # then the daemon closes the link
        return result(rid, "fine")

    d = fake(script, answer_hello=answer_hello)
    with connection_to(d, heartbeats=False) as c:
        assert c.call("x", "last") == "last"
        refusing.set()
        wait_for_eof(c)
        with pytest.raises(labhost.UnsupportedVersionError, match="version 2 only"):
            c.call("x", "y")  # finds the link closed, reconnects: refused
        assert len(d.connections) == 2
        with pytest.raises(labhost.UnsupportedVersionError, match="version 2 only"):
            c.call("x", "y")  # no second try on its own
        c._session.beat()  # nor from the heartbeat
        assert len(d.connections) == 2
        refusing.clear()
        assert c.resume() is False  # asked for: tried again (the fake resumes no session)
        assert len(d.connections) == 3
        assert c.call("x", "y") == "fine"


# ------------------------------------------------------------------ 4. sending once


@pytest.fixture
def never_idle(monkeypatch):
    """No idle-link check: a broken link is found only by sending on it."""
    monkeypatch.setattr(transport, "IDLE_CHECK_AFTER", float("inf"))


def test_a_request_whose_link_broke_before_it_went_out_is_sent_once_on_a_new_connection(fake, never_idle):
    d = fake(lambda rid, req: result(rid, req["method"]))
    with connection_to(d, heartbeats=False) as c:
        assert c.call("x", "first") == "first"
        c._io.sock.shutdown(socket.SHUT_WR)  # the link breaks: not a byte of the next request goes out
        assert c.call("x", "second") == "second"
        assert len(d.connections) == 2
        assert [r[2]["method"] for r in d.requests] == ["first", "second"]  # each sent once


def test_without_reconnect_a_request_that_could_not_go_out_is_connection_lost(fake, never_idle):
    d = fake(lambda rid, req: result(rid, req["method"]))
    with connection_to(d, heartbeats=False, reconnect=False) as c:
        assert c.call("x", "first") == "first"
        c._io.sock.shutdown(socket.SHUT_WR)
        with pytest.raises(labhost.ConnectionLostError, match="broke before the request was sent"):
            c.call("x", "second")
        assert len(d.connections) == 1
        assert [r[2]["method"] for r in d.requests] == ["first"]


# ------------------------------------------------------------------ 5. idle links


def test_a_request_on_an_idle_link_the_daemon_closed_goes_on_a_new_connection(fake, idle_at_once):
    def script(rid, req):
        if req["method"] == "first":
            return CloseAfter(result(rid, "first"))  # then the daemon closes the idle link
        return result(rid, req["method"])

    d = fake(script)
    with connection_to(d, heartbeats=False) as c:
        assert c.call("x", "first") == "first"
        wait_for_eof(c)
        assert c.call("x", "second") == "second"  # not connection_lost: it did not go out on the old link
        assert len(d.connections) == 2
        assert [r[2]["method"] for r in d.requests] == ["first", "second"]


# ------------------------------------------------------------------ 6. heartbeats


def answer_pings(rid, req):
    if req is None:  # a ping's payload
        return frame(protocol.PONG, rid, codec.encode(None))
    return result(rid, "fine")


def test_a_heartbeat_is_due_a_third_of_the_lease_after_the_last_frame_sent(fake):
    d = fake(answer_pings, lease_ms=3000)
    with connection_to(d, heartbeats=False) as c:
        session = c._session
        period = session.heartbeat_period()
        assert period == pytest.approx(1.0)  # a third of the lease
        c._io.last_sent = time.monotonic() - 0.5 * period
        assert 0.4 * period < session.next_beat_in() <= 0.5 * period  # not a whole period more
        session.beat()
        assert d.requests == []  # not due yet: nothing sent
        c._io.last_sent = time.monotonic() - period
        assert session.next_beat_in() == 0.0
        session.beat()
        assert [r[0] for r in d.requests] == [protocol.PING]


def test_a_heartbeat_never_busy_polls(fake, monkeypatch):
    polled = []
    receive = transport.Transport.receive

    def recording_receive(self, view, deadline, busy_poll):
        polled.append(busy_poll)
        return receive(self, view, deadline, busy_poll)

    monkeypatch.setattr(transport.Transport, "receive", recording_receive)
    d = fake(answer_pings, lease_ms=3000)
    with connection_to(d, heartbeats=False, busy_poll_us=50) as c:
        assert c.call("x", "y") == "fine"
        assert polled and all(polled)  # a call may poll
        del polled[:]
        c._io.last_sent = time.monotonic() - c._session.heartbeat_period()
        c._session.beat()
        assert [r[0] for r in d.requests] == [protocol.CALL, protocol.PING]
        assert polled and not any(polled)


# ------------------------------------------------------------------ 7. lock reports


def test_lock_status_of_one_service_expects_exactly_one_report(fake):
    laser = {"service": "laser", "locked": False}
    stage = {"service": "stage", "locked": False}
    answers = [[laser, stage], [], laser, [laser], [laser, stage]]
    d = fake(lambda rid, req: result(rid, answers.pop(0)))
    with connection_to(d) as c:
        with pytest.raises(labhost.BadMessageError, match="expected one report"):
            c.lock_status("laser")  # two reports
        with pytest.raises(labhost.BadMessageError, match="expected one report"):
            c.lock_status("laser")  # none
        with pytest.raises(labhost.BadMessageError, match="expected a list"):
            c.lock_status("laser")
        status = c.lock_status("laser")
        assert status.service == "laser" and not status.locked
        assert [s.service for s in c.lock_status()] == ["laser", "stage"]  # every service
        assert [r[2] for r in d.requests] == [{"service": "laser"}] * 4 + [{"service": ""}]


# ------------------------------------------------------------------ 9. connection-level errors


def test_a_connection_level_error_fails_every_waiting_request_then_reconnects(fake):
    held = threading.Event()

    def script(rid, req):
        if req["method"] == "hold":
            held.set()
            return b""  # no answer
        if req["method"] == "refuse":
            return CloseAfter(error_frame(0, 8, "busy", "too many requests"))
        return result(rid, "fine")

    d = fake(script)
    with connection_to(d, timeout=10, heartbeats=False) as c:
        errors = []

        def hold():
            try:
                c.call("x", "hold")
            except labhost.LabhostError as e:
                errors.append(e)

        t = threading.Thread(target=hold, daemon=True)
        t.start()
        assert held.wait(10)
        with pytest.raises(labhost.BusyError, match="too many requests"):
            c.call("x", "refuse")
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()
        assert len(errors) == 1 and type(errors[0]) is labhost.BusyError
        # busy is no refusal of this client: the next call reconnects (rule 3).
        assert c.call("x", "again") == "fine"
        assert len(d.connections) == 2
