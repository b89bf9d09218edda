"""pytest fixtures: real labhost daemons of this build (see daemon_process.py).

The labhost package is imported from clients/python (PYTHONPATH from CTest, else the path
below), so the tests exercise the source tree, not an installed copy.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import daemon_process  # noqa: E402

if daemon_process.CLIENT_DIR not in sys.path:
    sys.path.insert(0, daemon_process.CLIENT_DIR)

import labhost  # noqa: E402
from frames import FakeDaemon  # noqa: E402

# One daemon with every simulated instrument and two test_echo services (gates are
# process-wide, so a call blocked in one service is opened through the other).
SIM_SERVICES = {
    "laser": {"driver": "sim_laser", "description": "Tunable laser"},
    "stage": {"driver": "sim_stage", "params": {"speed_mm_s": 1000.0}},
    "powermeter": {"driver": "sim_powermeter", "params": {"seed": 7}},
    "camera": {"driver": "sim_camera"},
    "small_camera": {"driver": "sim_camera", "params": {"width": 64, "height": 48, "exposure_ms": 3.7}},
    "echo": {"driver": "test_echo"},
    "echo2": {"driver": "test_echo", "params": {"label": "second"}},
}

LOCK_SERVICES = {
    "laser": {"driver": "sim_laser"},
    "stage": {"driver": "sim_stage"},
}

LEASE_S = 1.0
CALL_TIMEOUT = 60.0  # every call in the tests is bounded: a hang fails, never stalls


@pytest.fixture(scope="session", autouse=True)
def _kill_leftover_daemons():
    yield
    daemon_process.kill_all()


@pytest.fixture(autouse=True)
def _no_labhost_environment(monkeypatch):
    """The client reads LABHOST_SECRET, LABHOST_SECRET_FILE, LABHOST_NS and LABHOST_TLS_CA,
    _CERT, _KEY: a developer's own settings must not change what the tests see. A test sets
    them with monkeypatch."""
    for name in ("LABHOST_SECRET", "LABHOST_SECRET_FILE", "LABHOST_NS", "LABHOST_TLS_CA",
                 "LABHOST_TLS_CERT", "LABHOST_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def sim_daemon():
    d = daemon_process.DaemonProcess(SIM_SERVICES, server_type="threaded", pool_size=4)
    yield d
    d.stop()


@pytest.fixture
def lock_daemon():
    d = daemon_process.DaemonProcess(LOCK_SERVICES, lockable=True, lease_s=LEASE_S)
    yield d
    d.stop()


@pytest.fixture
def connect(request):
    """connect(address, **options): labhost.connect with a call timeout and a client name,
    closed at the end of the test."""
    opened = []

    def _connect(address, **options):
        options.setdefault("timeout", CALL_TIMEOUT)
        options.setdefault("client_name", "pytest@%s" % request.node.name)
        c = labhost.connect(address, **options)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


@pytest.fixture
def daemons():
    """Starts extra daemons for one test: daemons(services, **keys); all stopped after."""
    started = []

    def _start(services, **keys):
        d = daemon_process.DaemonProcess(services, **keys)
        started.append(d)
        return d

    yield _start
    for d in started:
        d.kill()


@pytest.fixture
def fake():
    """fake(script, answer_hello=None, lease_ms=0, version=1): a FakeDaemon (frames.py) for
    one test, closed after it."""
    started = []

    def _start(script, answer_hello=None, lease_ms=0, version=1):
        d = FakeDaemon(script, answer_hello, lease_ms, version)
        started.append(d)
        return d

    yield _start
    for d in started:
        d.close()
