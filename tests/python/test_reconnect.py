"""A daemon killed (SIGKILL, as a crash or power loss) and restarted on its fixed port, under
a proxy that stays open: the proxy's next call reconnects. Sessions do not survive a daemon
restart, so the proxy gets a fresh session."""

import logging
import threading

import pytest

import labhost
from daemon_process import DaemonProcess

SERVICES = {
    "laser": {"driver": "sim_laser"},
    "echo": {"driver": "test_echo"},
    "echo2": {"driver": "test_echo"},
    "crash": {"driver": "test_crash_on_call"},
}


@pytest.fixture
def fixed_port_daemon():
    """A daemon on a fixed port: the port a first daemon got from the system. Yields a
    holder whose `daemon` the test may kill and replace with restart()."""

    class Holder:
        def __init__(self):
            self.daemon = DaemonProcess(SERVICES)
            self.port = self.daemon.port
            self.address = "127.0.0.1:%d" % self.port

        def restart(self):
            self.daemon.kill()
            self.daemon = DaemonProcess(SERVICES, address=self.address)
            assert self.daemon.port == self.port
            return self.daemon

    h = Holder()
    yield h
    h.daemon.kill()


def test_a_killed_and_restarted_daemon_is_reconnected_by_the_next_call(fixed_port_daemon, connect, caplog):
    d = fixed_port_daemon
    laser = connect(d.daemon.address("laser"))
    echo = connect(d.daemon.address("echo"))
    laser.set_wavelength(1600.0)
    assert laser.wavelength() == 1600.0
    old_token = laser.connection.session_token

    d.daemon.kill()
    with pytest.raises(labhost.ConnectionLostError):
        laser.wavelength()  # nothing listens now: the reconnect fails, typed
    with pytest.raises(labhost.ConnectionLostError):
        laser.wavelength()  # and is tried again on each call

    d.restart()
    with caplog.at_level(logging.WARNING, logger="labhost"):
        assert laser.wavelength() == 1550.0  # a fresh daemon: its laser starts at 1550 nm
    assert "could not be resumed" in caplog.text
    assert not laser.connection.resumed and laser.connection.session_token != old_token
    laser.set_wavelength(1560.5)
    assert laser.wavelength() == 1560.5
    # The other proxy, untouched while the daemon was down, reconnects on its next call too.
    assert echo.add(1, 2) == 3


def test_a_call_in_flight_when_the_daemon_dies_raises_connection_lost(fixed_port_daemon, connect):
    d = fixed_port_daemon
    daemon = connect(d.daemon.address())
    crash, echo = daemon["crash"], daemon["echo"]
    assert crash.ok() == 1
    with pytest.raises(labhost.ConnectionLostError) as e:
        crash.crash()  # abort()s the daemon while the call runs: it may have run
    assert isinstance(e.value, ConnectionError)
    d.daemon.process.wait(timeout=30)
    d.restart()
    assert echo.echo("back") == "back"
    assert crash.ok() == 1
    assert sorted(daemon.services()) == ["crash", "echo", "echo2", "laser"]


def test_every_call_in_flight_when_the_daemon_dies_raises_connection_lost(fixed_port_daemon, connect):
    d = fixed_port_daemon
    daemon = connect(d.daemon.address())
    echo, echo2, crash = daemon["echo"], daemon["echo2"], daemon["crash"]
    errors = []

    def blocked():
        try:
            echo.wait_gate("never-opened")
        except labhost.LabhostError as e:
            errors.append(e)

    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    echo2.wait_entered("never-opened", 1)  # the call is inside the driver: in flight
    with pytest.raises(labhost.ConnectionLostError):
        crash.crash()
    t.join(60)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], labhost.ConnectionLostError)
    d.restart()
    assert echo.add(2, 3) == 5
