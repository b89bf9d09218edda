"""TLS: a daemon whose host.json has "tls" serves TLS only. The client uses TLS when it knows
the CA file (tls_ca, $LABHOST_TLS_CA), checks the daemon's certificate and that it names the
host connected to, and presents its own certificate to a daemon that verifies clients.
Real daemons with a throwaway PKI from tests/support/make-test-pki."""

import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import numpy as np
import pytest

import labhost
from conftest import LEASE_S
from daemon_process import SOURCE_DIR, DaemonProcess, NameserverProcess
from frames import read_frame
from labhost import protocol, session
from relay import Relay, lock_cut_and_resume
from test_locks import goodbye_logged
from test_names import wait_for_names

SERVICES = {
    "echo": {"driver": "test_echo"},
    "echo2": {"driver": "test_echo"},
    "laser": {"driver": "sim_laser"},
    "camera": {"driver": "sim_camera"},
}
JOIN_TIMEOUT = 60.0


class Pki:
    """The files of make-test-pki, by name: pki.ca, pki.file("client.key")."""

    def __init__(self, folder):
        self.folder = folder
        self.ca = self.file("ca.crt")
        self.other_ca = self.file("other-ca.crt")

    def file(self, name):
        return os.path.join(self.folder, name)

    def tls(self, name="server", verify_clients=False):
        """A host.json "tls" section serving `name`.crt and .key."""
        return {"cert_file": self.file(name + ".crt"), "key_file": self.file(name + ".key"),
                "ca_file": self.ca, "verify_clients": verify_clients}

    def client(self, name="client"):
        """Connection options of a client with the certificate `name`."""
        return {"tls_ca": self.ca, "tls_cert": self.file(name + ".crt"),
                "tls_key": self.file(name + ".key")}


@pytest.fixture(scope="module")
def pki():
    folder = tempfile.mkdtemp(prefix="labhost-pytest-pki-")
    try:
        subprocess.run([os.path.join(SOURCE_DIR, "tests", "support", "make-test-pki"), folder],
                       check=True, timeout=120, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        yield Pki(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_daemon(pki):
    """A lockable daemon (lease 1 s) that serves TLS, with the certificate for 127.0.0.1."""
    d = DaemonProcess(SERVICES, host_keys={"tls": pki.tls()}, server_type="threaded",
                      pool_size=4, lockable=True, lease_s=LEASE_S)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def mtls_daemon(pki):
    """A daemon that serves TLS and lets in only clients with a certificate from the CA."""
    d = DaemonProcess({"echo": {"driver": "test_echo"}},
                      host_keys={"tls": pki.tls(verify_clients=True)})
    yield d
    d.stop()


@pytest.fixture(scope="module")
def wrong_host_daemon(pki):
    """A daemon whose certificate (from the right CA) names elsewhere.invalid only."""
    d = DaemonProcess({"echo": {"driver": "test_echo"}}, host_keys={"tls": pki.tls("wrong-host")})
    yield d
    d.stop()


def count_opens(monkeypatch):
    """Counts the connections the client opens (every handshake goes through Session.open)."""
    opened = []
    real_open = session.Session.open

    def counting_open(self, token):
        opened.append(token)
        return real_open(self, token)

    monkeypatch.setattr(session.Session, "open", counting_open)
    return opened


# ------------------------------------------------------------------ calls over TLS


def test_a_call_over_tls_with_the_ca_file_only(tls_daemon, pki, connect):
    echo = connect(tls_daemon.address("echo"), tls_ca=pki.ca)
    assert echo.connection.tls
    assert echo.add(2, 3) == 5
    assert echo.echo({"a": [1, b"x", None, 2.5]}) == {"a": [1, b"x", None, 2.5]}
    assert echo.connection._io.sock.version in ("TLSv1.2", "TLSv1.3")
    daemon = connect(tls_daemon.address(), tls_ca=pki.ca)
    assert sorted(daemon.services()) == sorted(SERVICES)
    assert daemon.ping() >= 0
    assert daemon.laser.wavelength() == 1550.0


def test_a_plain_connection_does_not_use_tls(sim_daemon, connect):
    assert not connect(sim_daemon.address("echo")).connection.tls


def test_tls_from_LABHOST_TLS_CA(tls_daemon, pki, connect, monkeypatch):
    monkeypatch.setenv("LABHOST_TLS_CA", pki.ca)
    echo = connect(tls_daemon.address("echo"))
    assert echo.connection.tls and echo.add(1, 1) == 2


def test_the_tls_ca_argument_comes_before_LABHOST_TLS_CA(tls_daemon, pki, connect, monkeypatch):
    monkeypatch.setenv("LABHOST_TLS_CA", pki.other_ca)
    assert connect(tls_daemon.address("echo"), tls_ca=pki.ca).add(1, 2) == 3
    with pytest.raises(labhost.AuthFailedError, match="TLS certificate was refused"):
        connect(tls_daemon.address("echo"))
    monkeypatch.setenv("LABHOST_TLS_CA", "")  # empty: as if unset, so no TLS
    with pytest.raises(labhost.TlsRequiredError):
        connect(tls_daemon.address("echo"))


def test_an_ssl_context_of_ones_own_replaces_the_file_options(tls_daemon, pki, connect):
    context = labhost.tls_context(pki.ca)
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert connect(tls_daemon.address("echo"), ssl_context=context).add(3, 4) == 7
    other = ssl.create_default_context(cafile=pki.other_ca)
    with pytest.raises(labhost.AuthFailedError, match="TLS certificate was refused"):
        connect(tls_daemon.address("echo"), tls_ca=pki.ca, ssl_context=other)  # the context wins
    with pytest.raises(TypeError, match="ssl_context"):
        connect(tls_daemon.address("echo"), ssl_context="not a context")


def test_the_certificate_may_name_the_host_by_its_dns_name(tls_daemon, pki, connect):
    # server.crt names 127.0.0.1, ::1 and localhost: "localhost" is checked as a DNS name.
    echo = connect("lab://localhost:%d/echo" % tls_daemon.port, tls_ca=pki.ca)
    assert echo.add(5, 6) == 11


def test_a_daemon_and_a_client_that_need_tls_and_a_secret(pki, connect, tmp_path):
    from daemon_process import write_secret_file
    path = write_secret_file(str(tmp_path), "tls and a secret")
    d = DaemonProcess({"echo": {"driver": "test_echo"}},
                      host_keys={"tls": pki.tls(), "auth": {"secret_file": path}})
    try:
        assert connect(d.address("echo"), tls_ca=pki.ca, secret="tls and a secret").add(1, 2) == 3
        with pytest.raises(labhost.AuthFailedError, match="requires a secret"):
            connect(d.address("echo"), tls_ca=pki.ca)
        with pytest.raises(labhost.TlsRequiredError):
            connect(d.address("echo"), secret="tls and a secret")
    finally:
        d.stop()


# ------------------------------------------------------------------ refusals


def test_a_client_without_tls_at_a_tls_daemon_gets_tls_required(tls_daemon, connect):
    with pytest.raises(labhost.TlsRequiredError, match="serves TLS only") as e:
        connect(tls_daemon.address("echo"))
    assert (e.value.code, e.value.name) == (32, "tls_required")
    assert isinstance(e.value, labhost.LabhostError)


def test_a_daemon_certificate_from_another_ca_is_auth_failed(tls_daemon, pki, connect):
    with pytest.raises(labhost.AuthFailedError,
                       match="the daemon's TLS certificate was refused: unable to get local issuer") as e:
        connect(tls_daemon.address("echo"), tls_ca=pki.other_ca)
    assert (e.value.code, e.value.name) == (30, "auth_failed")


def test_a_daemon_certificate_for_another_host_is_auth_failed(wrong_host_daemon, pki, connect):
    with pytest.raises(labhost.AuthFailedError,
                       match="the daemon's TLS certificate was refused: IP address mismatch"):
        connect(wrong_host_daemon.address("echo"), tls_ca=pki.ca)
    with pytest.raises(labhost.AuthFailedError,
                       match="the daemon's TLS certificate was refused: Hostname mismatch"):
        connect("lab://localhost:%d/echo" % wrong_host_daemon.port, tls_ca=pki.ca)


def test_a_tls_client_at_a_plain_daemon_is_connection_lost(sim_daemon, pki, connect):
    with pytest.raises(labhost.ConnectionLostError,
                       match=r"the daemon at 127\.0\.0\.1:%d does not serve TLS" % sim_daemon.port) as e:
        connect(sim_daemon.address("echo"), tls_ca=pki.ca)
    assert isinstance(e.value, ConnectionError)


def test_unusable_tls_files_fail_before_connecting(pki, tmp_path):
    # Nothing listens at this address: the errors must come from the files.
    address = "lab://127.0.0.1:1/echo"
    with pytest.raises(labhost.AuthFailedError, match="TLS CA file .*missing.crt"):
        labhost.connect(address, tls_ca=str(tmp_path / "missing.crt"))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(labhost.AuthFailedError, match="TLS CA file"):
        labhost.connect(address, tls_ca=str(not_pem))
    with pytest.raises(labhost.AuthFailedError, match="TLS certificate .*client.crt"):
        labhost.connect(address, tls_ca=pki.ca, tls_cert=pki.file("client.crt"),
                        tls_key=pki.file("stranger.key"))  # not its key


# ------------------------------------------------------------------ mutual TLS


def test_mutual_tls_with_the_client_certificate(mtls_daemon, pki, connect):
    echo = connect(mtls_daemon.address("echo"), **pki.client())
    assert echo.add(20, 22) == 42
    assert "TLS client certificate /CN=alice" in mtls_daemon.log()


def test_mutual_tls_with_the_certificate_from_the_environment(mtls_daemon, pki, connect, monkeypatch):
    for variable, value in zip(("LABHOST_TLS_CA", "LABHOST_TLS_CERT", "LABHOST_TLS_KEY"),
                               pki.client().values()):
        monkeypatch.setenv(variable, value)
    assert connect(mtls_daemon.address("echo")).add(1, 2) == 3


def test_mutual_tls_without_a_client_certificate_is_auth_failed(mtls_daemon, pki, connect):
    with pytest.raises(labhost.AuthFailedError,
                       match=r"the daemon refused this client's TLS certificate \(.*certificate required"):
        connect(mtls_daemon.address("echo"), tls_ca=pki.ca)


def test_mutual_tls_with_a_certificate_from_another_ca_is_auth_failed(mtls_daemon, pki, connect):
    with pytest.raises(labhost.AuthFailedError,
                       match=r"the daemon refused this client's TLS certificate \(.*unknown ca"):
        connect(mtls_daemon.address("echo"), **pki.client("stranger"))


# ------------------------------------------------------------------ threads and large frames


def test_threads_calling_at_once_over_one_tls_connection(tls_daemon, pki, connect):
    daemon = connect(tls_daemon.address(), tls_ca=pki.ca)
    echo, echo2 = daemon["echo"], daemon["echo2"]
    threads, calls = 4, 200
    start = threading.Barrier(threads)
    errors, done = [], []

    def work(t):
        try:
            start.wait(JOIN_TIMEOUT)
            proxy = echo if t % 2 else echo2
            for i in range(calls):
                assert proxy.add(t, i) == t + i
                if i % 20 == 0:  # large frames both ways, interleaved with the small ones
                    blob = bytes([t, i % 256]) * (40000 + t)
                    assert proxy.echo(blob) == blob
            done.append(t)
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(JOIN_TIMEOUT)
    assert not errors, errors
    assert sorted(done) == list(range(threads))


@pytest.mark.parametrize("timeout", [30.0, None])  # waits bounded by a deadline, and not
def test_a_reader_waiting_for_a_reply_does_not_hold_up_other_threads(tls_daemon, pki, connect, timeout):
    # One thread waits for a call that the daemon holds: it is the reader, waiting for the
    # socket. Others must still send and get their replies over the same connection: the
    # wait must not hold the TLS lock.
    daemon = connect(tls_daemon.address(), tls_ca=pki.ca, timeout=timeout)
    echo, echo2 = daemon["echo"], daemon["echo2"]
    opener = connect(tls_daemon.address("echo2"), tls_ca=pki.ca)  # opens the gate in any case
    gate = "tls-gate-%s" % timeout
    got, done = {}, threading.Event()

    def others():
        for i in range(50):
            got[i] = echo2.add(i, 1)
        done.set()

    blocked = threading.Thread(target=lambda: got.setdefault("gate", echo.wait_gate(gate)))
    blocked.start()
    opener.wait_entered(gate, 1)  # the blocked call is inside the driver
    worker = threading.Thread(target=others)
    worker.start()
    finished = done.wait(30)  # milliseconds when right; the gate opens whatever happened
    opener.open_gate(gate)
    blocked.join(JOIN_TIMEOUT)
    worker.join(JOIN_TIMEOUT)
    assert finished, "calls from other threads waited for the reader's reply"
    assert not blocked.is_alive() and "gate" in got
    assert [got[i] for i in range(50)] == [i + 1 for i in range(50)]


@pytest.mark.parametrize("timeout", [60.0, None])  # waits bounded by a deadline, and not
def test_a_camera_frame_over_tls_arrives_intact(tls_daemon, pki, connect, timeout):
    camera = connect(tls_daemon.address("camera"), tls_ca=pki.ca, timeout=timeout)
    before = camera.frames()
    frame = camera.grab()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint16
    assert frame.shape == (2048, 2048) and frame.nbytes == 8 * 1024 * 1024
    y = np.arange(2048, dtype=np.int64)[:, None]
    x = np.arange(2048, dtype=np.int64)[None, :]
    expected = ((x + y + before + int(camera.exposure())) % 65536).astype(np.uint16)
    assert np.array_equal(frame, expected)


def test_a_large_array_goes_to_the_daemon_and_back_over_tls(tls_daemon, pki, connect):
    echo = connect(tls_daemon.address("echo"), tls_ca=pki.ca)
    sent = np.arange(1 << 20, dtype=np.float64)  # 8 MiB, sent straight from its memory
    back = echo.echo(sent)
    assert back.dtype == np.float64 and np.array_equal(back, sent)
    assert echo.sum(sent[:1000]) == float(sum(range(1000)))


def test_a_timed_out_call_leaves_the_tls_stream_in_step(tls_daemon, pki, connect):
    echo = connect(tls_daemon.address("echo"), tls_ca=pki.ca, timeout=0.3)
    echo2 = connect(tls_daemon.address("echo2"), tls_ca=pki.ca)
    with pytest.raises(labhost.LabhostTimeoutError):
        echo.wait_gate("tls-timeout-gate")
    echo2.wait_entered("tls-timeout-gate", 1)
    echo2.open_gate("tls-timeout-gate")
    assert echo.add(2, 2) == 4  # the late reply is skipped, not taken for this one
    assert echo.echo("next") == "next"


def test_replies_that_openssl_has_already_decrypted_are_not_waited_for(pki):
    # A scripted TLS daemon answers the first call with a large reply and, in the same write
    # (so in the same TLS record as that reply's end), the reply to the next call. Reading
    # the large reply leaves the small one decrypted inside OpenSSL, where poll() cannot see
    # it: the next call must find it there, not wait for the socket until its timeout.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.file("server.crt"), pki.file("server.key"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    big = bytes(range(256)) * 1200  # > the client's 256 KiB receive buffer: the large path
    seen, finished = [], threading.Event()

    def serve():
        try:
            raw, _ = listener.accept()
            raw.settimeout(30)
            with context.wrap_socket(raw, server_side=True) as conn:
                hello = read_frame(conn)
                conn.sendall(protocol.frame_bytes(protocol.WELCOME, hello[1], {
                    "version": 1, "session_token": "t" * 32, "daemon": "fake",
                    "server_version": "0", "lease_ms": 0, "resumed": False}))
                first = read_frame(conn)
                seen.append(first)
                conn.sendall(protocol.frame_bytes(protocol.RESULT, first[1], big)
                             + protocol.frame_bytes(protocol.RESULT, first[1] + 1, "second"))
                while True:  # the second request, then goodbye or EOF
                    request = read_frame(conn)
                    seen.append(request)
                    if request is None or request[0] == protocol.GOODBYE:
                        break
        except OSError:
            pass
        finally:
            finished.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with labhost.Connection("127.0.0.1", port, timeout=5, heartbeats=False,
                                tls_ca=pki.ca) as c:
            assert c.call("x", "big") == big
            assert c.call("x", "second") == "second"
        assert finished.wait(30)
        assert [r[1] for r in seen[:2]] == [seen[0][1], seen[0][1] + 1]
    finally:
        listener.close()


# ------------------------------------------------------------------ sessions


def test_closing_over_tls_says_goodbye_and_releases_the_locks(tls_daemon, pki, connect):
    holder = connect(tls_daemon.address("laser"), tls_ca=pki.ca, client_name="tlsbye@test")
    other = connect(tls_daemon.address("laser"), tls_ca=pki.ca)
    holder.lock()
    holder.close()
    assert other.lock(wait=5).yours
    other.unlock()
    assert goodbye_logged(tls_daemon, "tlsbye@test")


def test_resume_over_tls_keeps_the_session_and_its_lock(tls_daemon, pki, connect):
    holder = connect(tls_daemon.address("laser"), tls_ca=pki.ca)
    other = connect(tls_daemon.address("laser"), tls_ca=pki.ca)
    holder.lock()
    token = holder.connection.session_token
    try:
        assert holder.connection.resume() is True  # an abortive break, then a new handshake
        assert holder.connection.session_token == token and holder.connection.tls
        assert holder.lock_status().yours
        with pytest.raises(labhost.LockedError):
            other.wavelength()
    finally:
        holder.unlock()


def test_after_a_link_reset_the_next_call_resumes_over_tls(tls_daemon, pki, connect):
    relay = Relay(tls_daemon.port)
    try:
        holder, _ = lock_cut_and_resume(relay, tls_daemon, connect, "tlsblip@test", tls_ca=pki.ca)
        holder.unlock()
    finally:
        relay.close()


def test_a_refused_reconnection_stops_the_automatic_reconnects(tls_daemon, wrong_host_daemon, pki,
                                                               connect, monkeypatch):
    relay = Relay(tls_daemon.port)
    try:
        echo = connect("lab://127.0.0.1:%d/echo" % relay.port, tls_ca=pki.ca, heartbeats=False)
        assert echo.add(1, 2) == 3
        opened = count_opens(monkeypatch)
        relay.target = ("127.0.0.1", wrong_host_daemon.port)  # now the relay leads elsewhere
        link = echo.connection._io.sock
        relay.cut()
        select.select([link], [], [], 10.0)  # the reset reached the client's socket
        with pytest.raises(labhost.AuthFailedError, match="TLS certificate was refused"):
            echo.add(1, 2)  # notices the break and reconnects: to a daemon it must refuse
        assert len(opened) == 1
        with pytest.raises(labhost.AuthFailedError, match="TLS certificate was refused"):
            echo.add(1, 2)  # no second try on its own
        echo.connection._session.beat()  # nor from the heartbeat
        assert len(opened) == 1
        relay.target = ("127.0.0.1", tls_daemon.port)
        echo.connection.resume()  # asked for: tried again
        assert len(opened) == 2
        assert echo.add(2, 3) == 5
    finally:
        relay.close()


def test_a_tls_connection_nobody_references_says_goodbye(tls_daemon, pki, connect):
    import gc
    other = connect(tls_daemon.address("laser"), tls_ca=pki.ca)
    holder = labhost.connect(tls_daemon.address("laser"), tls_ca=pki.ca, timeout=30,
                             client_name="tlscollected@test")
    holder.lock()
    del holder
    gc.collect()
    assert other.lock(wait=5).yours
    other.unlock()
    assert goodbye_logged(tls_daemon, "tlscollected@test")  # said by the finalizer, over TLS


# ------------------------------------------------------------------ the nameserver


def test_locate_and_names_over_tls(pki):
    ns = NameserverProcess(tls=pki.tls())
    try:
        d = DaemonProcess({"tls_laser": {"driver": "sim_laser"}},
                          host_keys={"tls": pki.tls(), "register_with": [ns.endpoint]})
        try:
            records = wait_for_names(ns.endpoint, ["tls_laser"], tls_ca=pki.ca)
            assert [r.address for r in records if r.name == "tls_laser"] == [d.address("tls_laser")]
            assert labhost.lookup("tls_laser", ns.endpoint, tls_ca=pki.ca).address == d.address("tls_laser")
            with pytest.raises(labhost.TlsRequiredError):
                labhost.names(ns.endpoint)
            with labhost.locate("tls_laser", ns.endpoint, tls_ca=pki.ca, timeout=60) as laser:
                assert laser.connection.tls and laser.wavelength() == 1550.0
        finally:
            d.stop()
    finally:
        ns.stop()


# ------------------------------------------------------------------ the asyncio client over TLS


def run_async(coroutine):
    import asyncio
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_the_asyncio_client_over_tls(tls_daemon, pki):
    import asyncio
    import labhost.aio

    async def body():
        conn = await labhost.aio.connect_daemon(tls_daemon.address(), tls_ca=pki.ca, timeout=60)
        async with conn:
            assert conn.tls
            sums = await asyncio.gather(*(conn.call("echo", "add", i, 1) for i in range(100)))
            assert sums == list(range(1, 101))
            before = await conn.call("camera", "frames")
            frame = await conn.call("camera", "grab")
            y = np.arange(2048, dtype=np.int64)[:, None]
            x = np.arange(2048, dtype=np.int64)[None, :]
            expected = ((x + y + before + int(await conn.call("camera", "exposure"))) % 65536)
            assert frame.shape == (2048, 2048) and np.array_equal(frame, expected.astype(np.uint16))
            sent = np.arange(1 << 20, dtype=np.float64)  # 8 MiB each way
            assert np.array_equal(await conn.call("echo", "echo", sent), sent)
            numbers = await conn.subscribe("echo", "numbers", queue=64)
            await conn.call("echo", "emit", 3)
            assert [(await numbers.next(30)).seq for _ in range(3)] == [1, 2, 3]
            await conn.call("laser", "wavelength")
            await conn.lock("laser")
            token = conn.session_token
            assert await conn.resume() is True  # the whole handshake again, over TLS
            assert conn.session_token == token and (await conn.lock_status("laser")).yours
            await conn.call("echo", "emit", 1)
            assert (await numbers.next(30)).seq == 4  # the subscription went on
            await conn.unlock("laser")
    run_async(body())


def test_the_asyncio_client_refuses_and_is_refused_as_the_sync_one(tls_daemon, mtls_daemon, sim_daemon, pki):
    import labhost.aio

    async def body():
        with pytest.raises(labhost.AuthFailedError, match="TLS certificate was refused"):
            await labhost.aio.connect_daemon(tls_daemon.address(), tls_ca=pki.other_ca)
        with pytest.raises(labhost.TlsRequiredError):
            await labhost.aio.connect_daemon(tls_daemon.address())
        with pytest.raises(labhost.ConnectionLostError, match="does not serve TLS"):
            await labhost.aio.connect_daemon(sim_daemon.address(), tls_ca=pki.ca)
        echo = await labhost.aio.connect(mtls_daemon.address("echo"), timeout=60, **pki.client())
        async with echo:
            assert await echo.add(2, 2) == 4
        with pytest.raises(labhost.AuthFailedError, match="refused this client's TLS certificate"):
            echo = await labhost.aio.connect(mtls_daemon.address("echo"), tls_ca=pki.ca, timeout=60)
            await echo.add(1, 1)  # with TLS 1.3 the refusal comes on the first read
    run_async(body())
