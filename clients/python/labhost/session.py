"""The session layer: one session with one daemon, over the multiplexer.

It opens links (TLS first when used, then hello, and the secret's challenge when the daemon
requires one), resumes the session on a new link after a break by presenting its token
(within the lease the daemon keeps the session with its locks; a daemon that restarted opens
a fresh one), keeps an idle session alive with heartbeats, and decides by the rules of
docs/clients.md when a broken link is replaced: after any break except a refusal that a new
link would only repeat (REFUSALS), never after close().

A daemon whose host.json has ``auth`` requires a shared secret: the handshake is a
challenge-response in which each side proves it knows the secret (HMAC-SHA256 over both
sides' fresh nonces, protocol.py), so the secret never travels. Every reconnection repeats it.

Thread-safety: one reconnection at a time (`_connect_lock`), run by whichever thread finds
the link broken first, a caller or the heartbeat thread; the others find it mended. The
welcome is replaced whole. The heartbeat thread holds its session only while it beats, so a
connection nobody references is still collected.
"""

import getpass
import logging
import os
import socket
import threading
import time
import weakref

from . import codec, protocol, transport
from .errors import (AuthFailedError, BadMessageError, ConnectionLostError, LabhostError,
                     TlsRequiredError, UnsupportedVersionError)
from .multiplexer import expect
from .transport import TlsLink, copy_error, recv_exact

__all__ = ["Session", "REFUSALS", "resumable", "default_client_name", "secret_from_environment",
           "secret_bytes", "end_session"]

log = logging.getLogger("labhost")

# Refusals of this client that a new connection would only repeat: not reconnected on their
# own (resume() still tries).
REFUSALS = (AuthFailedError, TlsRequiredError, UnsupportedVersionError)


def default_client_name():
    """``user@host``, as the daemon shows lock holders."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers without a passwd entry)
        user = "unknown"
    return "%s@%s" % (user, socket.gethostname())


def secret_from_environment():
    """The shared secret from the environment, as bytes: $LABHOST_SECRET, else the first line
    (surrounding blanks stripped, as the daemon reads its auth.secret_file) of the file named
    by $LABHOST_SECRET_FILE; None when neither is set. Raises AuthFailedError when the file
    cannot be read or holds no secret."""
    secret = os.environ.get("LABHOST_SECRET")
    if secret:
        return os.fsencode(secret)
    path = os.environ.get("LABHOST_SECRET_FILE")
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError as e:
        raise AuthFailedError("LABHOST_SECRET_FILE: cannot read %s: %s"
                              % (path, e.strerror or e)) from None
    secret = line.strip(b" \t\r\n")  # the line's own newline, and the blanks around it
    if not secret:
        raise AuthFailedError("LABHOST_SECRET_FILE: %s holds no secret" % path)
    return secret


def secret_bytes(secret):
    """The secret argument as bytes (str is UTF-8); None or empty: from the environment."""
    if secret is None or (isinstance(secret, (str, bytes, bytearray)) and not secret):
        return secret_from_environment()
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    raise TypeError("secret: expected str or bytes, got %s" % type(secret).__name__)


def resumable(error):
    """Whether a break may be repaired by reconnecting on its own: not after a refusal that a
    new connection would repeat (REFUSALS). None (not broken, or mended by another thread) is
    resumable: Session.resume() then returns at once."""
    return not isinstance(error, REFUSALS)


def end_session(io, stop):
    """A connection's finalizer (it must hold nothing that refers back to the connection):
    stops the heartbeats, says goodbye without blocking and closes the link."""
    stop.set()
    io.shutdown()


def _weakly(method):
    """`method` called through a weak reference, or not at all once its object is gone: the
    multiplexer's hook must not keep the session alive (session and multiplexer would form a
    cycle, which keeps a closed connection's buffers until the garbage collector runs)."""
    ref = weakref.WeakMethod(method)

    def call():
        bound = ref()
        if bound is not None:
            bound()
    return call


class Session:
    """The session over the Multiplexer `mux` with the daemon at host:port. `secret`: bytes
    or None; `ssl_context`: an ssl.SSLContext for TLS, or None; `reconnect`: replace broken
    links by the rules (REFUSALS), else leave them broken. open_first() connects."""

    def __init__(self, mux, host, port, *, connect_timeout, client_name, secret, ssl_context,
                 reconnect):
        self.mux = mux
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self.secret = secret
        self.ssl_context = ssl_context
        self.welcome = None
        self.stop = threading.Event()   # set by close() or the finalizer: heartbeats end
        self.heartbeat_thread = None
        self._connect_lock = threading.Lock()  # one reconnect at a time
        self.reconnect = reconnect

    @property
    def reconnect(self):
        return self._reconnect

    @reconnect.setter
    def reconnect(self, on):
        self._reconnect = on
        self.mux.repair = _weakly(self._repair) if on else None

    @property
    def address(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "lab://%s:%d" % (host, self.port)

    @property
    def lease(self):
        """The daemon's lease in seconds: a session silent this long ends (with its locks)."""
        return self.welcome.get("lease_ms", 0) / 1000.0

    @property
    def resumed(self):
        return bool(self.welcome.get("resumed", False))

    # ------------------------------------------------------------------ opening

    def open_first(self):
        """Opens the first link, with a fresh session."""
        sock, self.welcome = self.open("")
        io = self.mux.io
        with io.write_lock:
            io.attach(sock)
        io.last_sent = time.monotonic()

    def open(self, token):
        """Connects and shakes hands (TLS when used, then hello, and with a secret challenge
        and authenticate), before anyone else may use the socket. The whole handshake is
        bounded by connect_timeout. Returns (socket, or TlsLink with TLS; welcome)."""
        where = "%s:%d" % (self.host, self.port)
        timeout = self.connect_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = transport.connect(self.host, self.port, timeout)
        if self.ssl_context is not None:
            sock = self._tls_handshake(sock, where, deadline)  # closes sock when it fails
        try:
            secret = self.secret
            client_nonce = os.urandom(protocol.NONCE_SIZE) if secret else None
            sock.sendall(protocol.frame_bytes(
                protocol.HELLO, 1, protocol.hello(self.client_name, os.getpid(), token, client_nonce)))
            message_type, value = self._recv_handshake_frame(sock, deadline)
            if message_type == protocol.CHALLENGE:
                # The daemon requires the secret: check its proof first (an impostor learns
                # nothing from us), then give ours.
                challenge = protocol.parse_challenge(value)
                if not secret:
                    raise AuthFailedError(
                        "daemon at %s requires a secret: pass secret=..., or set LABHOST_SECRET "
                        "or LABHOST_SECRET_FILE" % where)
                expected = protocol.server_proof(secret, client_nonce, challenge["server_nonce"])
                if not protocol.proofs_equal(challenge["server_proof"], expected):
                    # Either our secret differs from the daemon's, or this is not the
                    # daemon meant: the two cannot be told apart, and in neither case may
                    # our proof go out.
                    raise AuthFailedError(
                        "the daemon could not prove it knows the secret: the secret given "
                        "differs from the daemon's auth.secret_file, or %s is not the daemon "
                        "meant" % where)
                proof = protocol.client_proof(secret, challenge["server_nonce"], client_nonce)
                sock.sendall(protocol.frame_bytes(protocol.AUTHENTICATE, 2, protocol.authenticate(proof)))
                message_type, value = self._recv_handshake_frame(sock, deadline)
            if message_type == protocol.ERROR:
                raise protocol.error_from(value)
            if message_type != protocol.WELCOME:
                raise BadMessageError("expected welcome, got %s" % protocol.MESSAGE_NAMES[message_type])
            welcome = protocol.parse_welcome(value)
            if self.ssl_context is not None:
                return TlsLink(sock), welcome
            sock.settimeout(None)
            return sock, welcome
        except socket.timeout:
            sock.close()
            raise ConnectionLostError("no welcome from %s within %g s" % (where, timeout)) from None
        except transport.SSL_ERROR as e:  # an alert on the first read: the daemon refused our certificate
            sock.close()
            raise transport.tls_handshake_error(e, where) from None
        except OSError as e:
            sock.close()
            raise ConnectionLostError("hello to %s failed: %s" % (where, e)) from None
        except BaseException:
            sock.close()
            raise

    def _tls_handshake(self, sock, where, deadline):
        """Shakes hands over TLS on a connected socket (closed on failure), checking the
        daemon's certificate and that it names self.host. Returns the SSLSocket, blocking
        with a timeout until the welcome."""
        try:
            if deadline is not None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except socket.timeout:
            sock.close()
            raise ConnectionLostError("no TLS handshake with %s within %g s"
                                      % (where, self.connect_timeout)) from None
        except transport.SSL_ERROR as e:
            sock.close()
            raise transport.tls_handshake_error(e, where) from None
        except OSError as e:
            sock.close()
            raise ConnectionLostError("TLS handshake with %s failed: %s" % (where, e)) from None
        except BaseException:
            sock.close()
            raise

    def _recv_handshake_frame(self, sock, deadline):
        """(type, decoded payload) of one frame on a socket nobody else uses yet."""
        header = recv_exact(sock, protocol.HEADER_SIZE, deadline)
        message_type, _, _, size = protocol.parse_header(header, self.mux.io.max_payload)
        return message_type, codec.decode(recv_exact(sock, size, deadline))

    # ------------------------------------------------------------------ resuming

    def _repair(self):
        """The multiplexer's hook before a request on a broken link (set while reconnect is
        on): reconnects unless the daemon refused this client."""
        if resumable(self.mux.broken):
            self.resume()

    def resume(self, explicit=False):
        """Replaces a broken link by a new one that presents the session token. Unless
        `explicit` (Connection.resume()), not after the daemon refused this client
        (resumable). True when the daemon still had the session."""
        mux = self.mux
        with self._connect_lock:
            with mux.cond:
                if mux.io.closed:
                    raise ConnectionLostError("the client closed this connection")
                if mux.broken is None:
                    return self.resumed  # another thread did it
                if not explicit and not resumable(mux.broken):
                    raise copy_error(mux.broken)  # refused while this thread waited for the lock
                if not mux.wait_reader_stopped(10.0):
                    raise ConnectionLostError("the reader of the broken connection did not stop")
                token = self.welcome["session_token"]
            try:
                sock, welcome = self.open(token)
            except REFUSALS as e:
                # The daemon refused this client: a new connection would be refused again, so
                # no automatic reconnect after this one (resume() still tries).
                with mux.cond:
                    if mux.broken is not None:
                        mux.broken = e
                raise
            with mux.cond:
                if mux.io.closed:
                    sock.close()
                    raise ConnectionLostError("the client closed this connection")
                mux.replace_link(sock)
                self.welcome = welcome
            if not welcome.get("resumed"):
                log.warning("labhost: %s: the session could not be resumed (the daemon restarted "
                            "or the lease ran out); a new one was opened, without earlier locks",
                            self.address)
            return bool(welcome.get("resumed"))

    def drop_and_resume(self):
        """Drops the link as a network failure would, then resume(explicit=True)."""
        mux = self.mux
        with mux.cond:
            if mux.io.closed:
                raise ConnectionLostError("the client closed this connection")
            if mux.broken is None:
                mux.break_link(ConnectionLostError("reconnecting"), abortive=True)
        return self.resume(explicit=True)

    # ------------------------------------------------------------------ heartbeats

    def start_heartbeats(self):
        """Starts the heartbeat thread (a daemon thread) when the daemon has a lease."""
        if self.lease <= 0:
            return
        self.heartbeat_thread = threading.Thread(
            target=_heartbeat_loop, args=(weakref.ref(self), self.stop),
            name="labhost heartbeat %s:%d" % (self.host, self.port), daemon=True)
        self.heartbeat_thread.start()

    def heartbeat_period(self):
        return max(self.lease / 3.0, 0.01)

    def next_beat_in(self):
        """Seconds until a heartbeat is due: a period after the last frame sent, so that the
        daemon never hears nothing for longer; a whole period while broken."""
        period = self.heartbeat_period()
        if self.mux.broken is not None:
            return period
        return min(period, max(0.0, self.mux.io.last_sent + period - time.monotonic()))

    def beat(self):
        """One heartbeat: a ping when nothing was sent for a period; a reconnect when broken.
        A heartbeat never busy-polls: no caller waits on it."""
        mux = self.mux
        if mux.io.closed:
            return
        if mux.broken is not None:
            if self.reconnect and resumable(mux.broken):
                self.resume()
            return
        if time.monotonic() - mux.io.last_sent >= self.heartbeat_period() * 0.9:
            expect(mux.request_value(protocol.PING, None, None, busy_poll=False), protocol.PONG)

    # ------------------------------------------------------------------ closing

    def close(self):
        """Says goodbye (the daemon ends the session and releases its locks) and fails the
        requests in flight. False when closed already."""
        mux = self.mux
        io = mux.io
        with mux.cond:
            if io.closed:
                return False
            io.closed = True
            self.stop.set()
            if mux.broken is None:
                io.say_goodbye(lock_timeout=1.0)
            mux.break_link(ConnectionLostError("the client closed this connection"), abortive=False)
            mux.wait_reader_stopped(5.0)
        return True

    def join_heartbeats(self):
        t = self.heartbeat_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)


def _heartbeat_loop(ref, stop):
    """The heartbeat thread. Holds the session only while beating, so an unreferenced
    connection is still collected (and closed)."""
    while True:
        session = ref()
        if session is None:
            return
        wait = session.next_beat_in()
        del session
        if stop.wait(wait):
            return
        session = ref()
        if session is None:
            return
        try:
            session.beat()
        except (LabhostError, OSError) as e:  # the next beat retries
            log.debug("labhost heartbeat: %s", e)
        finally:
            del session
