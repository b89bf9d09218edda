"""Typed errors arrive as exception classes with the daemon's message; the connection
survives every error that concerns one request only."""

import socket

import numpy as np
import pytest

import labhost
from labhost import protocol


def test_no_such_service(sim_daemon, connect):
    with pytest.raises(labhost.NoSuchServiceError) as e:
        connect(sim_daemon.address("nothing"))
    assert e.value.message == "daemon test has no service 'nothing'"
    assert (e.value.code, e.value.name) == (3, "no_such_service")
    assert isinstance(e.value, labhost.LabhostError)
    daemon = connect(sim_daemon.address())
    with pytest.raises(labhost.NoSuchServiceError, match="has no service 'nothing'"):
        daemon.connection.call("nothing", "x")
    with pytest.raises(AttributeError, match="has no service 'nothing'"):
        daemon.nothing


def test_no_such_method(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"))
    with pytest.raises(labhost.NoSuchMethodError) as e:
        echo.call("wavelenght")
    assert e.value.message == "echo (test_echo) has no method 'wavelenght'"
    assert str(e.value) == "no_such_method: echo (test_echo) has no method 'wavelenght'"
    with pytest.raises(AttributeError) as e:
        echo.wavelenght
    assert "service 'echo' (test_echo) has no method 'wavelenght'" in str(e.value)
    assert "its methods: echo, add, scale" in str(e.value)
    assert echo.add(1, 2) == 3


@pytest.mark.parametrize("args, kwargs, message", [
    ((1,), {}, "echo.add() missing argument 'b'"),
    ((1, 2, 3), {}, "echo.add() takes 2 argument(s), 3 given"),
    ((1,), {"c": 2}, "echo.add() has no parameter 'c'"),
    ((1, 2), {"a": 2}, "echo.add() got two values for 'a'"),
    (("x", 1), {}, "parameter 'a': expected int64"),
    ((1.5, 1), {}, "parameter 'a': expected int64"),
])
def test_bad_arguments(sim_daemon, connect, args, kwargs, message):
    echo = connect(sim_daemon.address("echo"))
    with pytest.raises(labhost.BadArgumentsError) as e:
        echo.add(*args, **kwargs)
    assert message in e.value.message
    assert e.value.code == 5


def test_driver_errors_carry_the_drivers_message(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"))
    with pytest.raises(labhost.DriverError) as e:
        echo.fail("the laser diode is too hot")
    assert e.value.message == "the laser diode is too hot"
    with pytest.raises(labhost.DriverError, match="unknown exception"):
        echo.fail_unknown()
    assert echo.echo("still fine") == "still fine"


def test_a_service_that_did_not_open_is_unavailable_with_the_reason(daemons, connect):
    d = daemons({"broken": {"driver": "test_create_throws"}, "echo": {"driver": "test_echo"}})
    broken = connect(d.address("broken"))
    with pytest.raises(labhost.ServiceUnavailableError) as e:
        broken.nothing()
    assert "instrument not found on /dev/ttyUSB9" in e.value.message
    description = broken.describe()
    assert description["state"] != "ready"  # "unavailable", or "waiting" while it retries
    assert "instrument not found on /dev/ttyUSB9" in description["reason"]
    assert "State: %s" % description["state"] in type(broken).__doc__
    assert connect(d.address("echo")).add(1, 1) == 2


def test_locks_on_a_shared_daemon_are_not_lockable(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    with pytest.raises(labhost.NotLockableError, match="shared"):
        laser.lock()
    with pytest.raises(labhost.NotLockableError):
        laser.unlock()
    assert laser.lock_status().locked is False


def test_connection_refused_is_connection_lost(connect):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(labhost.ConnectionLostError) as e:
        connect("lab://127.0.0.1:%d/laser" % port, connect_timeout=5)
    assert isinstance(e.value, ConnectionError)
    assert "cannot connect to 127.0.0.1:%d" % port in e.value.message


def test_a_daemon_over_its_connection_limit_answers_busy(daemons, connect):
    d = daemons({"echo": {"driver": "test_echo"}}, max_connections=1)
    first = connect(d.address("echo"))
    with pytest.raises(labhost.BusyError) as e:  # request id 0: a connection-level error
        connect(d.address("echo"))
    assert e.value.code == 8
    assert first.add(1, 2) == 3


def test_a_timeout_fails_one_call_and_the_late_reply_is_dropped(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"), timeout=0.3)
    echo2 = connect(sim_daemon.address("echo2"))
    with pytest.raises(labhost.LabhostTimeoutError) as e:
        echo.wait_gate("timeout-gate")
    assert isinstance(e.value, TimeoutError)
    echo2.wait_entered("timeout-gate", 1)
    echo2.open_gate("timeout-gate")
    assert echo.add(2, 2) == 4  # the late reply of wait_gate is skipped, not taken for this one
    assert echo.echo("next") == "next"


def test_a_request_over_the_daemons_maximum_is_bad_frame_and_the_proxy_carries_on(daemons, connect):
    d = daemons({"echo": {"driver": "test_echo"}}, max_frame_bytes=65536)
    echo = connect(d.address("echo"))
    token = echo.connection.session_token
    with pytest.raises(labhost.BadFrameError, match="exceeds the maximum of 65536"):
        echo.echo(bytes(70000))
    assert echo.echo(bytes(1000)) == bytes(1000)  # reconnected, the session resumed
    assert echo.connection.resumed and echo.connection.session_token == token


def test_client_side_maximum_applies_to_requests_and_replies(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"), max_payload=8192)  # the description fits
    with pytest.raises(labhost.BadFrameError, match="request payload of"):
        echo.echo(bytes(9000))  # refused before sending: the connection is untouched
    assert echo.add(1, 2) == 3
    with pytest.raises(labhost.BadFrameError, match="payload of 10006 bytes exceeds the maximum of 8192"):
        echo.ramp(5000)  # refused on the header, before any allocation; the link is dropped
    assert echo.ramp(10).tolist() == list(range(10))  # and comes back


def test_unsupported_version_refused_by_the_daemon(sim_daemon):
    """A raw hello whose version range meets neither 1 nor 2: the daemon's typed refusal
    decodes."""
    hello = protocol.hello("raw@test", 1)
    hello["min_version"] = hello["max_version"] = 3
    with socket.create_connection(("127.0.0.1", sim_daemon.port), timeout=30) as s:
        s.sendall(protocol.frame_bytes(protocol.HELLO, 1, hello))
        data = b""
        while len(data) < protocol.HEADER_SIZE:
            data += s.recv(4096)
        message_type, _, request_id, size = protocol.parse_header(data[:16])
        while len(data) < 16 + size:
            data += s.recv(4096)
    from labhost import codec
    error = protocol.error_from(codec.decode(data[16:16 + size]))
    assert message_type == protocol.ERROR and request_id == 1
    assert type(error) is labhost.UnsupportedVersionError
    assert "client speaks versions 3 to 3, this daemon speaks 1 to 2" in error.message


def test_errors_keep_their_class_across_threads_and_pickling(sim_daemon, connect):
    import pickle
    echo = connect(sim_daemon.address("echo"))
    with pytest.raises(labhost.DriverError) as e:
        echo.fail("x")
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is labhost.DriverError and again.message == "x"
    assert np.array_equal(echo.echo(np.arange(3)), np.arange(3))
