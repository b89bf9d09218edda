"""One proxy, several threads: calls in flight together on one connection, each reply
matched to its caller."""

import threading
import time

import numpy as np
import pytest

import labhost

JOIN_TIMEOUT = 120.0


def run_threads(count, body):
    """Runs body(i) in `count` threads; returns their results, re-raising the first error."""
    results = [None] * count
    errors = []

    def runner(i):
        try:
            results[i] = body(i)
        except BaseException as e:  # reported to the test below
            errors.append(e)

    threads = [threading.Thread(target=runner, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after %g s" % JOIN_TIMEOUT
    if errors:
        raise errors[0]
    return results


def test_eight_threads_times_two_hundred_calls_on_one_proxy(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"))

    def body(t):
        for i in range(200):
            assert echo.add(t, i) == t + i
            text = "thread %d call %d" % (t, i)
            assert echo.echo(text) == text
            if i % 50 == 0:
                a = np.full(1000 + t, t, dtype=np.int32)
                assert np.array_equal(echo.echo(a), a)
        return t

    assert run_threads(8, body) == list(range(8))


def test_threads_share_one_daemon_connection_across_services(sim_daemon, connect):
    daemon = connect(sim_daemon.address())
    laser, camera, meter = daemon["laser"], daemon["camera"], daemon["powermeter"]
    assert laser.connection is camera.connection is meter.connection

    def body(t):
        for i in range(20):
            if t % 3 == 0:
                if i % 4:
                    continue
                before = camera.frames()
                frame = camera.grab()
                # other threads may grab too: the offset is one of the frames since `before`
                offset = (int(frame[0, 0]) - 10) % 65536
                assert offset >= before
                y, x = 1000, 77
                assert frame[y, x] == (x + y + 10 + offset) % 65536
            elif t % 3 == 1:
                assert laser.wavelength() == 1550.0
            else:
                assert meter.read_many(100).shape == (100,)
        return True

    assert all(run_threads(6, body))


def test_a_call_blocked_in_the_daemon_does_not_hold_up_the_connection(sim_daemon, connect):
    daemon = connect(sim_daemon.address())
    echo, echo2 = daemon["echo"], daemon["echo2"]
    result = {}

    def blocked():
        result["waiting"] = echo.wait_gate("shared-connection-gate")

    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    # On the same connection, while wait_gate is in flight: the other service answers.
    echo2.wait_entered("shared-connection-gate", 1)
    assert echo2.waiting("shared-connection-gate") == 1
    assert echo2.add(20, 22) == 42
    echo2.open_gate("shared-connection-gate")
    t.join(JOIN_TIMEOUT)
    assert not t.is_alive()
    assert result["waiting"] == 1


def test_closing_fails_the_calls_in_flight_with_connection_lost(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"))
    echo2 = connect(sim_daemon.address("echo2"))
    outcome = {}

    def blocked():
        try:
            echo.wait_gate("close-gate")
        except labhost.LabhostError as e:
            outcome["error"] = e

    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    echo2.wait_entered("close-gate", 1)
    echo.close()
    t.join(JOIN_TIMEOUT)
    assert not t.is_alive()
    assert isinstance(outcome["error"], labhost.ConnectionLostError)
    assert "closed" in outcome["error"].message
    with pytest.raises(labhost.ConnectionLostError):
        echo.add(1, 2)  # a closed proxy stays closed
    echo2.open_gate("close-gate")
