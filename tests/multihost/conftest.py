"""pytest fixtures for tests/multihost: one lab of several hosts (netlab.py), made once for
the session and brought back to full health before each test.

Runs as root only (network namespaces): otherwise, and when `ip netns` does not work, every
test fails (never skips) with the reason.
"""

import atexit
import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import netlab  # noqa: E402


def _terminate_as_interrupt(signum, frame):
    # SIGTERM (a CTest timeout, a CI job cancelled) ends the run like Ctrl-C, so that fixture
    # teardown and atexit remove the namespaces and processes.
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _terminate_as_interrupt)


@pytest.fixture(scope="session")
def the_lab():
    problem = netlab.preflight()
    if problem:
        pytest.fail(problem, pytrace=False)
    netlab.remove_stale()
    lab = netlab.Lab()
    atexit.register(lab.destroy_quietly)
    try:
        lab.make()
    except BaseException:
        print(lab.logs())
        lab.destroy_quietly()
        raise
    yield lab
    lab.destroy()


@pytest.fixture
def lab(the_lab):
    """The lab with every host up and every name registered; the logs are printed after the
    test (pytest shows them when it fails)."""
    the_lab.restore()
    yield the_lab
    print(the_lab.logs())
