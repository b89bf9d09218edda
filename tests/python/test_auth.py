"""Shared-secret authentication: a daemon whose host.json has "auth": {"secret_file": ...}
lets in only clients that prove they know the secret (HMAC-SHA256 challenge-response over
both sides' nonces), and proves it knows the secret itself. Real daemons, and a scripted fake
daemon for what a real one never does (an impostor)."""

import hashlib
import hmac
import os
import shutil
import tempfile
import threading
import time

import pytest

import labhost
from conftest import LEASE_S, LOCK_SERVICES
from daemon_process import DaemonProcess, write_secret_file
from labhost import protocol
from frames import FakeServer, read_frame
from relay import Relay, lock_cut_and_resume

SECRET = "correct horse battery staple"


@pytest.fixture(scope="module")
def secret_folder():
    folder = tempfile.mkdtemp(prefix="labhost-pytest-auth-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def secret_daemon(secret_folder):
    """A lockable daemon (lease 1 s) that requires SECRET."""
    path = write_secret_file(secret_folder, SECRET, "daemon.secret")
    d = DaemonProcess(LOCK_SERVICES, host_keys={"auth": {"secret_file": path}},
                      lockable=True, lease_s=LEASE_S)
    yield d
    d.stop()


# ------------------------------------------------------------------ the right secret


def test_the_secret_as_an_argument(secret_daemon, connect):
    laser = connect(secret_daemon.address("laser"), secret=SECRET)
    assert laser.wavelength() == 1550.0
    laser.set_wavelength(1555.0)
    assert laser.wavelength() == 1555.0
    laser.set_wavelength(1550.0)
    assert not laser.connection.resumed
    stage = connect(secret_daemon.address("laser"), secret=SECRET.encode())  # bytes too
    assert stage.wavelength() == 1550.0


def test_the_secret_for_a_daemon_object(secret_daemon, connect):
    daemon = connect(secret_daemon.address(), secret=SECRET)
    assert sorted(daemon.services()) == ["laser", "stage"]
    assert daemon.laser.wavelength() == 1550.0
    assert daemon.ping() >= 0


def test_the_secret_from_LABHOST_SECRET(secret_daemon, connect, monkeypatch):
    monkeypatch.setenv("LABHOST_SECRET", SECRET)
    assert connect(secret_daemon.address("laser")).wavelength() == 1550.0


def test_the_secret_from_LABHOST_SECRET_FILE(secret_daemon, connect, monkeypatch, tmp_path):
    path = tmp_path / "client.secret"
    path.write_text("  %s \t\r\nthe second line is not read\n" % SECRET)  # blanks around it go
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(path))
    assert labhost.secret_from_environment() == SECRET.encode()
    assert connect(secret_daemon.address("laser")).wavelength() == 1550.0


def test_the_argument_comes_before_the_environment_and_LABHOST_SECRET_before_the_file(
        secret_daemon, connect, monkeypatch, tmp_path):
    wrong_file = tmp_path / "wrong.secret"
    wrong_file.write_text("not the secret\n")
    monkeypatch.setenv("LABHOST_SECRET", "not the secret either")
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(wrong_file))
    assert connect(secret_daemon.address("laser"), secret=SECRET).wavelength() == 1550.0
    right_file = tmp_path / "right.secret"
    right_file.write_text(SECRET + "\n")
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(right_file))
    with pytest.raises(labhost.AuthFailedError):  # LABHOST_SECRET (wrong) wins over the file
        connect(secret_daemon.address("laser"))
    monkeypatch.setenv("LABHOST_SECRET", "")  # empty: as if unset
    assert connect(secret_daemon.address("laser")).wavelength() == 1550.0


# ------------------------------------------------------------------ wrong or missing


def test_a_wrong_secret_is_auth_failed(secret_daemon, connect):
    # The daemon proves itself first, with its secret: the client sees that the proof does not
    # match its own secret and stops there, without sending a proof of its own.
    with pytest.raises(labhost.AuthFailedError,
                       match="the daemon could not prove it knows the secret") as e:
        connect(secret_daemon.address("laser"), secret="guess")
    assert (e.value.code, e.value.name) == (30, "auth_failed")
    assert isinstance(e.value, labhost.LabhostError)


def test_a_wrong_secret_from_the_environment_is_auth_failed(secret_daemon, connect, monkeypatch):
    monkeypatch.setenv("LABHOST_SECRET", SECRET + " ")  # one byte off is as wrong as any
    with pytest.raises(labhost.AuthFailedError, match="could not prove"):
        connect(secret_daemon.address())


def test_a_wrong_proof_is_refused_by_the_daemon_after_a_delay(secret_daemon, connect, monkeypatch):
    # A client whose proof is wrong although the daemon's checked out (as a client that does
    # not check the daemon's proof and guesses would be): the daemon answers auth_failed
    # "wrong secret" after half a second and closes.
    monkeypatch.setattr(protocol, "client_proof", lambda secret, sn, cn: bytes(32))
    start = time.monotonic()
    with pytest.raises(labhost.AuthFailedError, match="wrong secret") as e:
        connect(secret_daemon.address("laser"), secret=SECRET)
    assert (e.value.code, e.value.name) == (30, "auth_failed")
    assert time.monotonic() - start >= 0.4


def test_no_secret_is_auth_failed(secret_daemon, connect):
    with pytest.raises(labhost.AuthFailedError, match="requires a secret") as e:
        connect(secret_daemon.address("laser"))
    assert isinstance(e.value, labhost.LabhostError) and e.value.code == 30


def test_an_unreadable_or_empty_secret_file_fails_before_connecting(monkeypatch, tmp_path):
    # Nothing listens at this address: the error must come from reading the file.
    missing = tmp_path / "missing.secret"
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(missing))
    with pytest.raises(labhost.AuthFailedError, match="LABHOST_SECRET_FILE: cannot read .*missing.secret"):
        labhost.connect("lab://127.0.0.1:1/laser")
    empty = tmp_path / "empty.secret"
    empty.write_text(" \n")
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(empty))
    with pytest.raises(labhost.AuthFailedError, match="holds no secret"):
        labhost.connect("lab://127.0.0.1:1/laser")
    with pytest.raises(TypeError, match="secret"):
        labhost.connect("lab://127.0.0.1:1/laser", secret=1234)


def test_a_daemon_without_auth_lets_a_client_with_a_secret_in(lock_daemon, connect):
    laser = connect(lock_daemon.address("laser"), secret=SECRET)
    assert laser.wavelength() == 1550.0


# ------------------------------------------------------------------ resume


def test_resume_authenticates_again_and_keeps_the_lock(secret_daemon, connect):
    holder = connect(secret_daemon.address("laser"), secret=SECRET)
    other = connect(secret_daemon.address("laser"), secret=SECRET)
    holder.lock()
    token = holder.connection.session_token
    try:
        assert holder.connection.resume() is True
        assert holder.connection.session_token == token
        assert holder.lock_status().yours
        with pytest.raises(labhost.LockedError):
            other.wavelength()
    finally:
        holder.unlock()


def test_after_a_link_reset_the_session_re_authenticates_and_keeps_its_lock(secret_daemon, connect):
    relay = Relay(secret_daemon.port)
    try:
        # A new TCP connection means a new handshake with fresh nonces: the daemon lets
        # nobody in without one.
        holder, other = lock_cut_and_resume(relay, secret_daemon, connect, "authblip@test", secret=SECRET)
        # While idle, the heartbeat thread does the same: the lock outlives three leases.
        relay.cut()
        with pytest.raises(labhost.LockedError):
            other.lock(wait=3 * LEASE_S)
        assert relay.accepted.acquire(timeout=10)
        assert holder.lock_status().yours
        holder.unlock()
    finally:
        relay.close()


# ------------------------------------------------------------------ a scripted daemon


def _hmac(secret, *parts):
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


def _frame(message_type, request_id, value):
    return protocol.frame_bytes(message_type, request_id, value)


class FakeAuthDaemon(FakeServer):
    """The daemon's side of the handshake, written from the protocol's description (not with
    the client's own functions). `secret`: the daemon's; `impostor`: send a proof made with
    another secret. Records every frame it reads."""

    def __init__(self, secret, impostor=False):
        self.secret = secret
        self.impostor = impostor
        self.received = []  # (type, request id, value) per connection: lists
        self.finished = threading.Semaphore(0)  # released as each connection's script ends
        super().__init__()

    def _accepted(self, conn):
        frames = []
        self.received.append(frames)
        return (frames,)

    def _serve(self, conn, frames):
        try:
            conn.settimeout(30)
            hello = read_frame(conn)
            frames.append(hello)
            client_nonce = hello[2].get("client_nonce")
            if not isinstance(client_nonce, bytes) or len(client_nonce) != 32:
                conn.sendall(_frame(protocol.ERROR, hello[1], {
                    "code": 30, "name": "auth_failed", "message": "fake requires a secret"}))
                return
            server_nonce = os.urandom(32)
            proof_secret = b"not the secret" if self.impostor else self.secret
            conn.sendall(_frame(protocol.CHALLENGE, hello[1], {
                "server_nonce": server_nonce,
                "server_proof": _hmac(proof_secret, b"labhost-server", client_nonce, server_nonce)}))
            answer = read_frame(conn)
            frames.append(answer)
            if answer is None:
                return
            expected = _hmac(self.secret, b"labhost-client", server_nonce, client_nonce)
            if answer[0] != protocol.AUTHENTICATE or answer[2].get("client_proof") != expected:
                conn.sendall(_frame(protocol.ERROR, answer[1], {
                    "code": 30, "name": "auth_failed", "message": "wrong secret"}))
                return
            conn.sendall(_frame(protocol.WELCOME, answer[1], {
                "version": 1, "session_token": "a" * 32, "daemon": "fake", "server_version": "0",
                "lease_ms": 0, "resumed": False}))
            while True:
                request = read_frame(conn)
                frames.append(request)
                if request is None or request[0] == protocol.GOODBYE:
                    return
                conn.sendall(_frame(protocol.RESULT, request[1], "ok"))
        except OSError:
            pass
        finally:
            conn.close()
            self.finished.release()



@pytest.fixture
def fake_auth():
    started = []

    def start(secret, **options):
        d = FakeAuthDaemon(secret, **options)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def _connection(d, **options):
    return labhost.Connection("127.0.0.1", d.port, timeout=30, heartbeats=False, **options)


def test_the_handshake_follows_the_protocol(fake_auth):
    d = fake_auth(b"s3cret")
    with _connection(d, secret="s3cret") as c:
        assert c.call("x", "y") == "ok"
        c.resume()  # a second handshake, with a fresh nonce
        assert c.call("x", "y") == "ok"
    first, second = d.received[0], d.received[1]
    hello, authenticate = first[0], first[1]
    assert hello[0] == protocol.HELLO and len(hello[2]["client_nonce"]) == 32
    assert authenticate[0] == protocol.AUTHENTICATE and set(authenticate[2]) == {"client_proof"}
    assert second[0][2]["client_nonce"] != hello[2]["client_nonce"]
    assert second[0][2]["session_token"] == "a" * 32  # the resume presented the token


def test_without_a_secret_hello_carries_no_nonce(fake_auth):
    d = fake_auth(b"s3cret")
    with pytest.raises(labhost.AuthFailedError, match="fake requires a secret"):
        _connection(d)
    assert "client_nonce" not in d.received[0][0][2]


def test_a_daemon_that_cannot_prove_the_secret_gets_no_proof_from_the_client(fake_auth):
    d = fake_auth(b"s3cret", impostor=True)
    with pytest.raises(labhost.AuthFailedError, match="the daemon could not prove it knows the secret"):
        _connection(d, secret="s3cret")
    assert d.finished.acquire(timeout=10)
    assert d.received[0][1] is None  # the connection closed without an authenticate


def test_a_wrong_secret_against_the_scripted_daemon(fake_auth):
    d = fake_auth(b"s3cret")
    with pytest.raises(labhost.AuthFailedError, match="could not prove"):
        _connection(d, secret="other")  # its proof does not match ours: we stop first
