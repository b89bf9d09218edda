"""Oneway calls (protocol version 2) with the sync client: sent without waiting, run in the
order sent and before the session's later calls to the service, and a failure reported to
on_oneway_error (by default a warning on the "labhost" logger) and counted."""

import logging
import threading

import pytest

import labhost
from frames import connection_to, frame, result
from labhost import codec, protocol

REPORT_TIMEOUT = 30.0


def test_a_method_the_driver_marks_oneway_returns_none_at_once_and_runs_in_order(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo2"))
    before = len(echo.recorded())
    for i in range(500):
        assert echo.record(i) is None  # marked oneway by the driver: the proxy does not wait
    # An ordinary call after them runs after them (one service's calls run in order).
    assert echo.recorded()[before:] == list(range(500))
    assert echo.connection.oneway_failures == 0


def test_any_method_may_be_called_oneway(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo2"))
    before = len(echo.recorded())
    echo.call_oneway("record", "by name")
    echo.connection.call_oneway("echo2", "record", value="by keyword")
    echo.call_oneway("add", 1, 2)  # its result is not sent
    assert echo.recorded()[before:] == ["by name", "by keyword"]
    assert echo.add(2, 2) == 4


def test_a_failed_oneway_call_is_reported_and_counted(sim_daemon, connect):
    reported = []
    arrived = threading.Event()

    def on_oneway_error(error):
        reported.append(error)
        arrived.set()

    echo = connect(sim_daemon.address("echo"), on_oneway_error=on_oneway_error)
    echo.call_oneway("fail", "the shutter jammed")
    # The error comes when the connection next reads: here with the next call's reply.
    assert echo.add(1, 1) == 2
    assert arrived.wait(REPORT_TIMEOUT)
    assert len(reported) == 1 and type(reported[0]) is labhost.DriverError
    assert "the shutter jammed" in reported[0].message
    assert echo.connection.oneway_failures == 1
    echo.call_oneway("no_such_method")
    echo.add(1, 1)
    assert type(reported[1]) is labhost.NoSuchMethodError and echo.connection.oneway_failures == 2


def test_a_failed_oneway_call_is_a_warning_by_default(sim_daemon, connect, caplog):
    echo = connect(sim_daemon.address("echo"))
    with caplog.at_level(logging.WARNING, logger="labhost"):
        echo.call_oneway("fail", "lamp burnt out")
        echo.add(1, 1)
    assert "a oneway call failed: driver_error: lamp burnt out" in caplog.text
    assert echo.connection.oneway_failures == 1


def test_a_callback_that_raises_does_not_break_the_connection(sim_daemon, connect, caplog):
    def faulty(error):
        raise RuntimeError("a bug in the callback")

    echo = connect(sim_daemon.address("echo"), on_oneway_error=faulty)
    with caplog.at_level(logging.ERROR, logger="labhost"):
        echo.call_oneway("fail", "x")
        assert echo.add(2, 3) == 5
    assert "on_oneway_error raised" in caplog.text


def test_a_oneway_call_sends_oneway_true_and_waits_for_nothing(fake):
    def script(rid, req):
        if req.get("oneway"):
            if req["method"] == "bad":
                return frame(protocol.ERROR, rid, codec.encode(
                    {"code": 6, "name": "driver_error", "message": "bad " + str(rid)}))
            return b""  # nothing for a oneway call that succeeded
        return result(rid, "done")

    reported = []
    d = fake(script, version=2)
    with connection_to(d, on_oneway_error=reported.append) as c:
        c.call_oneway("svc", "good", 1, k=2)
        c.call_oneway("svc", "bad")
        assert c.call("svc", "last") == "done"
        requests = [r[2] for r in d.requests]
        assert list(requests[0].items()) == [("service", "svc"), ("method", "good"), ("args", [1]),
                                             ("kwargs", {"k": 2}), ("oneway", True)]
        assert "oneway" not in requests[2]  # ordinary calls send the four keys only
        assert [type(e) for e in reported] == [labhost.DriverError]
        assert reported[0].message == "bad %d" % d.requests[1][1]  # the error of that request


def test_an_error_for_an_unknown_request_is_not_taken_for_a_oneway_failure(fake):
    def script(rid, req):
        if req["method"] == "stray":
            return frame(protocol.ERROR, rid + 1000, codec.encode(
                {"code": 6, "name": "driver_error", "message": "stray"})) + result(rid, "ok")
        return result(rid, "ok")

    reported = []
    d = fake(script, version=2)
    with connection_to(d, on_oneway_error=reported.append) as c:
        assert c.call("svc", "stray") == "ok"
        assert reported == [] and c.oneway_failures == 0


@pytest.mark.parametrize("reconnect", [True, False])
def test_a_oneway_call_on_a_closed_connection_raises(sim_daemon, reconnect):
    c = labhost.Connection("127.0.0.1", sim_daemon.port, reconnect=reconnect, timeout=30)
    c.close()
    with pytest.raises(labhost.ConnectionLostError, match="closed"):
        c.call_oneway("echo", "record", 1)
