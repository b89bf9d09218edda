"""Busy polling in the Python client (busy_poll_us): replies arrive whole while it polls, it
can be turned off, and a caller waiting for a slow call stops polling after one window.
Whether a poll finds its bytes is up to the scheduler, so these check what holds either way."""

import os
import threading
import time

import numpy as np
import pytest

import labhost

ECHO = {"echo": {"driver": "test_echo"}, "echo2": {"driver": "test_echo"}}

several_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                  reason="a process on one CPU never polls")


@pytest.mark.parametrize("bad", [-1, "50", None, True, [50]])
def test_busy_poll_us_must_be_a_number_of_microseconds(bad):
    with pytest.raises(ValueError, match="busy_poll_us"):
        labhost.Connection("127.0.0.1", 1, busy_poll_us=bad)


def test_replies_arrive_whole_while_both_ends_poll(daemons, connect):
    # Windows far longer than any reply takes: the daemon and the client read by polling.
    d = daemons(ECHO, busy_poll_us=1000000)
    echo = connect(d.address("echo"), busy_poll_us=1000000, heartbeats=False)
    for i in range(300):
        assert echo.add(i, 1) == i + 1
    for count in (1, 1000, 100000, 3000000):  # large ones arrive in several pieces
        ramp = echo.ramp(count)
        assert len(ramp) == count
        assert int(ramp[-1]) == (count - 1) % 65536
    a = np.arange(200000, dtype=np.float64)
    assert np.array_equal(echo.echo(a), a)
    assert echo.echo("after the arrays") == "after the arrays"


def test_a_client_that_never_polls_calls_as_well(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"), busy_poll_us=0)
    for i in range(200):
        assert echo.add(i, i) == 2 * i
    assert len(echo.ramp(100000)) == 100000


@several_cpus
def test_a_caller_waiting_for_a_slow_call_polls_one_window_then_sleeps(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"), busy_poll_us=20000, heartbeats=False)
    helper = connect(sim_daemon.address("echo2"), busy_poll_us=0)
    assert echo.add(1, 1) == 2  # the policy starts out polling
    result = {}

    def slow_call():
        cpu_before = time.thread_time()
        result["waiting"] = echo.wait_gate("python-busy-poll-gate")
        result["cpu"] = time.thread_time() - cpu_before

    caller = threading.Thread(target=slow_call, daemon=True)
    caller.start()
    helper.wait_entered("python-busy-poll-gate", 1)
    time.sleep(0.5)  # the call stays inside the driver much longer than the 20 ms window
    helper.open_gate("python-busy-poll-gate")
    caller.join(60)
    assert not caller.is_alive()
    assert result["waiting"] == 1
    assert result["cpu"] < 0.1, "the waiting caller used %.3f s of CPU" % result["cpu"]
