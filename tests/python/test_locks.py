"""Locks on a lockable daemon (lease 1 s): taken, refused to others, freed on unlock, on
close, on the end of the session; kept across a network blip and by heartbeats."""

import gc
import os
import select
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import weakref

import pytest

import labhost
from conftest import LEASE_S, LOCK_SERVICES
from daemon_process import CLIENT_DIR
from relay import Relay

JOIN_TIMEOUT = 60.0


def goodbye_logged(daemon, client_name):
    """True when the daemon's log says the session of `client_name` ended with a goodbye
    (a socket closed without one reads "connection closed by the client")."""
    return any("session of %s " % client_name in line and "ended: goodbye" in line
               for line in daemon.log().splitlines())


def test_a_lock_keeps_other_sessions_out_until_unlock(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"), client_name="holder@test")
    other = connect(lock_daemon.address("laser"), client_name="other@test")
    status = holder.lock()
    assert status.locked and status.yours and status.service == "laser"
    assert status.holder_name == "holder@test" and status.holder_pid == os.getpid()
    assert holder.wavelength() == 1550.0
    with pytest.raises(labhost.LockedError) as e:
        other.wavelength()
    assert e.value.message.startswith("laser is locked by holder@test (pid %d, 127.0.0.1:" % os.getpid())
    assert (e.value.code, e.value.name) == (20, "locked")
    with pytest.raises(labhost.LockedError):
        other.lock()
    seen = other.lock_status()
    assert seen.locked and not seen.yours and seen.holder_name == "holder@test"
    assert 0 < seen.lease_left_ms <= LEASE_S * 1000
    assert abs(seen.since - time.time()) < 60
    assert "laser: locked by holder@test" in str(seen)
    assert other.describe()["name"] == "laser"  # describe stays open to all
    holder.unlock()
    assert not other.lock_status().locked
    assert other.wavelength() == 1550.0


def test_locked_context_manager(lock_daemon, connect):
    laser = connect(lock_daemon.address("laser"))
    other = connect(lock_daemon.address("laser"))
    with laser.locked(wait=5) as status:
        assert status.yours
        laser.set_wavelength(1560.0)
        with pytest.raises(labhost.LockedError):
            other.set_wavelength(1500.0)
    assert not other.lock_status().locked
    with pytest.raises(ZeroDivisionError):
        with laser.locked(wait=5):
            1 / 0
    assert not other.lock_status().locked  # released on the way out of an error too
    assert other.wavelength() == 1560.0


def test_unlock_by_a_non_holder_and_relock(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    other = connect(lock_daemon.address("laser"))
    holder.lock()
    assert holder.lock().yours  # already yours: fine
    with pytest.raises(labhost.NotLockOwnerError, match="not by this session"):
        other.unlock()
    holder.unlock()
    with pytest.raises(labhost.NotLockOwnerError, match="laser is not locked"):
        holder.unlock()


def test_a_waiting_lock_is_granted_when_freed_and_times_out_otherwise(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    waiter = connect(lock_daemon.address("laser"), timeout=5)  # lock's wait adds to the timeout
    holder.lock()
    start = time.monotonic()
    with pytest.raises(labhost.LockedError, match="after waiting 200 ms"):
        waiter.lock(wait=0.2)
    assert time.monotonic() - start >= 0.19
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("status", waiter.lock(wait=30)), daemon=True)
    t.start()
    holder.unlock()  # before or after the waiter's request arrives: granted either way
    t.join(JOIN_TIMEOUT)
    assert not t.is_alive() and got["status"].yours


def test_closing_the_proxy_releases_its_locks(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    other = connect(lock_daemon.address("laser"))
    holder.lock()
    holder.close()
    assert other.lock(wait=5).yours


def test_a_proxy_nobody_references_closes_and_releases_its_locks(lock_daemon, connect):
    other = connect(lock_daemon.address("laser"))
    holder = labhost.connect(lock_daemon.address("laser"), timeout=30, client_name="collected@test")
    holder.lock()
    conn = holder.connection
    heartbeat = conn._session.heartbeat_thread
    assert heartbeat.is_alive()
    collected = threading.Event()
    weakref.finalize(conn, collected.set)
    del holder, conn
    gc.collect()
    assert collected.is_set()  # the heartbeat thread holds no strong reference
    heartbeat.join(10)
    assert not heartbeat.is_alive()
    assert other.lock(wait=5).yours
    assert goodbye_logged(lock_daemon, "collected@test")  # said by the finalizer


def test_the_interpreter_says_goodbye_at_exit(lock_daemon, connect):
    other = connect(lock_daemon.address("laser"))
    child = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[2])
        import labhost
        laser = labhost.connect(sys.argv[1], client_name="exiting@test", timeout=60)
        laser.lock()
        print("locked", flush=True)
        # no close(): the interpreter's exit closes the connection
    """)
    result = subprocess.run([sys.executable, "-c", child, lock_daemon.address("laser"), CLIENT_DIR],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0 and result.stdout == b"locked\n", result.stderr
    assert other.lock(wait=5).yours
    assert goodbye_logged(lock_daemon, "exiting@test")  # not merely a closed socket


def test_a_daemon_object_shares_one_session_between_its_proxies(lock_daemon, connect):
    daemon = connect(lock_daemon.address())
    other = connect(lock_daemon.address())
    daemon["laser"].lock()
    daemon.stage.lock()
    statuses = {s.service: s for s in other.lock_status()}
    assert statuses["laser"].locked and statuses["stage"].locked
    assert all(s.yours for s in daemon.lock_status())
    assert daemon.laser.wavelength() == 1550.0
    with pytest.raises(labhost.LockedError):
        other.stage.position()
    daemon.close()  # the goodbye reaches the daemon in its own time: wait for the locks
    assert other["laser"].lock(wait=5).yours and other.stage.lock(wait=5).yours


def test_heartbeats_keep_an_idle_holders_lock(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"), client_name="idle@test")
    other = connect(lock_daemon.address("laser"))
    holder.lock()
    # Three leases of silence from the holder: only heartbeats keep the session. Waiting
    # for the lock is the idleness, not a guess.
    with pytest.raises(labhost.LockedError, match="after waiting 3000 ms"):
        other.lock(wait=3 * LEASE_S)
    assert holder.lock_status().yours
    assert holder.wavelength() == 1550.0


def test_without_heartbeats_an_idle_session_and_its_lock_end_with_the_lease(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"), heartbeats=False)
    other = connect(lock_daemon.address("laser"))
    holder.lock()
    start = time.monotonic()
    assert other.lock(wait=10).yours
    assert LEASE_S * 0.5 <= time.monotonic() - start <= LEASE_S + 2.0


def test_resume_keeps_the_session_and_its_locks(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    other = connect(lock_daemon.address("laser"))
    holder.lock()
    token = holder.connection.session_token
    assert holder.connection.resume() is True  # a reset, as a network failure, then back
    assert holder.connection.session_token == token
    assert holder.lock_status().yours
    assert holder.wavelength() == 1550.0
    with pytest.raises(labhost.LockedError):
        other.wavelength()


def test_after_a_network_blip_the_proxy_resumes_its_session_and_locks(lock_daemon, connect):
    relay = Relay(lock_daemon.port)
    try:
        holder = connect("lab://127.0.0.1:%d/laser" % relay.port, client_name="blip@test")
        other = connect(lock_daemon.address("laser"))
        holder.lock()
        token = holder.connection.session_token
        link = holder.connection._io.sock
        relay.cut()
        # Wait for the reset to reach the client's socket (an event, not a guess): a call sent
        # before it arrives is lost with the link, as it would be in the real world.
        try:
            select.select([link], [], [], 10.0)
        except (OSError, ValueError):
            pass  # the heartbeat thread saw it first and replaced the socket
        # The next call notices the reset, reconnects through the relay and resumes.
        assert holder.wavelength() == 1550.0
        assert holder.connection.resumed and holder.connection.session_token == token
        assert holder.lock_status().yours
        with pytest.raises(labhost.LockedError, match="blip@test"):
            other.wavelength()
        # A blip while idle is repaired by the heartbeat thread as well; either way the
        # lock holds: the other session cannot get it within three leases.
        relay.cut()
        with pytest.raises(labhost.LockedError):
            other.lock(wait=3 * LEASE_S)
        assert holder.lock_status().yours
    finally:
        relay.close()


def test_force_unlock_needs_the_admin_secret(daemons, connect):
    with tempfile.TemporaryDirectory() as folder:
        secret = os.path.join(folder, "admin.secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("s3cret-lab-admin\n")
        d = daemons(LOCK_SERVICES, lockable=True, lease_s=LEASE_S, admin_secret_file=secret)
        holder = connect(d.address("laser"), client_name="holder@test")
        admin = connect(d.address("laser"), client_name="admin@test")
        holder.lock()
        with pytest.raises(labhost.NotAuthorisedError, match="wrong admin secret"):
            admin.force_unlock("guess")
        assert holder.lock_status().yours
        admin.force_unlock("s3cret-lab-admin")
        with pytest.raises(labhost.LockedOutError, match="administrator"):
            holder.wavelength()
        assert holder.wavelength() == 1550.0  # told once, then free


def test_force_unlock_is_refused_without_a_configured_secret(lock_daemon, connect):
    holder = connect(lock_daemon.address("laser"))
    admin = connect(lock_daemon.address("laser"))
    holder.lock()
    with pytest.raises(labhost.NotAuthorisedError, match="not enabled"):
        admin.force_unlock("anything")
