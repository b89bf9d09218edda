"""One connection, and one session, to one labhost daemon.

A Connection is thread-safe: several threads may call at once, and their requests are in
flight together on the one TCP socket, matched by request id. Reading follows the
leader/follower pattern of the C++ client (core/client/client.cpp): a thread waiting for its
reply either becomes the reader (reads frames and hands each to its waiter) or sleeps until
the reader hands it its reply. A lone caller thus reads its own reply: no thread hop.

While open, a background (daemon) thread sends a ping every third of the daemon's lease, so
an idle session and its locks stay alive. When the connection breaks, the heartbeat thread,
or else the next request, reconnects and presents the session token: within the lease the
daemon resumes the session with its locks; a daemon that restarted opens a fresh session. A
request whose connection broke while it was in flight raises ConnectionLostError (it may
have run). close() says goodbye; so does the interpreter at exit, or the garbage collector
for a connection nobody references.

A daemon whose host.json has ``auth`` requires a shared secret: the handshake is a
challenge-response in which each side proves it knows the secret (HMAC-SHA256 over both
sides' fresh nonces, protocol.py), so the secret never travels. Every reconnection repeats it.
The secret: the ``secret`` argument, else $LABHOST_SECRET, else the first line of the file
named by $LABHOST_SECRET_FILE (secret_from_environment).

A daemon whose host.json has ``tls`` serves TLS only. The client uses TLS when it knows a CA
file (``tls_ca``, else $LABHOST_TLS_CA) or is given an ``ssl_context``: the daemon's
certificate must be signed by that CA and name the host connected to; ``tls_cert`` and
``tls_key`` ($LABHOST_TLS_CERT, $LABHOST_TLS_KEY) are this client's, for daemons that verify
clients. An OpenSSL connection must not be used by two threads at once, while here one thread
reads as others send: the TLS socket is non-blocking, every TLS read and write runs under a
lock and returns at once, and waiting for the socket happens outside the lock (_TlsLink).
Plain TCP connections do not go through any of this.
"""

import getpass
import logging
import os
import select
import socket
import threading
import time
import weakref

ssl = None  # the ssl module, imported when a connection uses TLS (_load_ssl)

from . import codec, protocol
from .address import parse_address
from .errors import (AuthFailedError, BadFrameError, BadMessageError, ConnectionLostError,
                     LabhostError, LabhostTimeoutError, TlsRequiredError, make_error)
from .locks import LockStatus

__all__ = ["Connection", "default_client_name", "secret_from_environment", "tls_context"]

log = logging.getLogger("labhost")

_DEFAULT = object()
_PAD = 2  # payload buffers start 2 bytes in, so a result's typed array is 8-byte aligned
_RECV_BUFFER = 256 * 1024
_MSG_PEEK_NOWAIT = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
_HAS_DONTWAIT = hasattr(socket, "MSG_DONTWAIT")
_IDLE_CHECK_AFTER = 0.005  # seconds since the last request after which a link is checked
_SSL_ERROR = ()  # ssl.SSLError once the ssl module is loaded; until then nothing to catch
_TLS_JOIN_BELOW = 16 * 1024  # TLS: smaller buffers of a frame are joined into one record run
# Alerts by which a daemon refuses this client's certificate (OpenSSL reason codes), during
# the handshake or, with TLS 1.3, on the first read after it.
_CLIENT_CERTIFICATE_REFUSALS = frozenset((
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_HANDSHAKE_FAILURE",
))


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
    secret = line.strip(b" \t\r\n")
    if not secret:
        raise AuthFailedError("LABHOST_SECRET_FILE: %s holds no secret" % path)
    return secret


def _secret_bytes(secret):
    """The secret argument as bytes (str is UTF-8); None or empty: from the environment."""
    if secret is None or (isinstance(secret, (str, bytes, bytearray)) and not secret):
        return secret_from_environment()
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    raise TypeError("secret: expected str or bytes, got %s" % type(secret).__name__)


def _load_ssl():
    """The ssl module, imported on first use: a client without TLS does not pay for it."""
    global ssl, _SSL_ERROR
    if ssl is None:
        try:
            import ssl as module
        except ImportError:  # pragma: no cover - a Python built without OpenSSL
            raise AuthFailedError("TLS: this Python has no ssl module") from None
        _SSL_ERROR = module.SSLError
        ssl = module
    return ssl


def tls_context(ca=None, cert=None, key=None):
    """The ssl.SSLContext for TLS to labhost daemons, or None when no CA file is known (then
    the client does not use TLS). `ca`: the CA file (PEM) that signed the daemons'
    certificates, else $LABHOST_TLS_CA; `cert`, `key`: this client's certificate chain and
    private key (PEM) for daemons that verify clients (mutual TLS), else $LABHOST_TLS_CERT and
    $LABHOST_TLS_KEY (no key: it is in the certificate file). The context verifies the
    daemon's certificate against `ca` only (not the system's CAs) and checks that it names the
    host connected to; TLS 1.2 or later. Raises AuthFailedError when a file cannot be read or
    does not fit."""
    ca = _tls_path(ca, "LABHOST_TLS_CA")
    if not ca:
        return None
    cert = _tls_path(cert, "LABHOST_TLS_CERT")
    key = _tls_path(key, "LABHOST_TLS_KEY")
    _load_ssl()
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ValueError) as e:
        raise AuthFailedError("TLS CA file %s: %s" % (ca, _tls_reason(e))) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if cert:
        try:
            context.load_cert_chain(cert, key or None)
        except (OSError, ValueError) as e:
            raise AuthFailedError("TLS certificate %s (key %s): %s"
                                  % (cert, key or "in the same file", _tls_reason(e))) from None
    return context


def _tls_path(value, variable):
    """A file argument as a str path; None or empty: the environment variable's value."""
    if value is None or (isinstance(value, (str, bytes)) and not value):
        return os.environ.get(variable) or None
    return os.fsdecode(os.fspath(value))


def _tls_reason(e):
    """OpenSSL's reason for a failure, as OpenSSL words it ("wrong version number")."""
    message = getattr(e, "verify_message", None)
    if message:
        return message
    reason = getattr(e, "reason", None)
    if reason:
        return reason.lower().replace("_", " ")
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _tls_handshake_error(e, where):
    """The labhost error for an ssl.SSLError while shaking hands with, or reading the welcome
    from, the daemon at `where`."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return AuthFailedError("the daemon's TLS certificate was refused: %s" % _tls_reason(e))
    reason = getattr(e, "reason", None)
    if reason in _CLIENT_CERTIFICATE_REFUSALS:
        return AuthFailedError("the daemon refused this client's TLS certificate (%s)" % _tls_reason(e))
    if reason == "WRONG_VERSION_NUMBER":
        # A daemon without TLS answers the TLS greeting with a plain labhost frame, which
        # OpenSSL takes for a record of an unknown version.
        return ConnectionLostError("the daemon at %s does not serve TLS (%s)" % (where, _tls_reason(e)))
    return ConnectionLostError("TLS handshake with %s failed: %s" % (where, _tls_reason(e)))


def _tls_read_error(e):
    """The labhost error for an ssl.SSLError on a read after the handshake. With TLS 1.3 a
    daemon checks the client's certificate after the client's side of the handshake is done:
    its refusal arrives as an alert on the first read."""
    if getattr(e, "reason", None) in _CLIENT_CERTIFICATE_REFUSALS:
        return AuthFailedError("the daemon refused this client's TLS certificate (%s)" % _tls_reason(e))
    return ConnectionLostError("TLS receive failed: %s" % _tls_reason(e))


def _resumable(error):
    """Whether a break may be repaired by reconnecting on its own: not when the daemon refused
    this client (its credentials, or TLS), which a new connection would repeat. None (not
    broken, or mended by another thread) is resumable: _resume() then returns at once."""
    return not isinstance(error, (AuthFailedError, TlsRequiredError))


def _copy(error):
    """A fresh exception like `error`, for raising in another thread."""
    return make_error(error.code, error.message, error.name)


class _Pending:
    __slots__ = ("done", "type", "payload", "error")

    def __init__(self):
        self.done = False
        self.type = None
        self.payload = None
        self.error = None


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _BusyPoll:
    """When the reader polls the socket before sleeping on it, as the daemon and the C++
    client do (core/protocol/busy_poll.h): waking a sleeping thread costs more than a small
    call on some machines. Polls for `window` seconds; after a poll in vain sleeps through
    the next 1, 3, 7, ... up to 63 waits that ended within the window (slow calls and idle
    connections never bring polling back); a poll that finds its bytes halves that backoff.
    The reader's alone."""

    _MAX_BACKOFF = 63

    def __init__(self, window):
        self.window = window if window > 0 and _HAS_DONTWAIT and _usable_cpus() > 1 else 0.0
        self._backoff = 0
        self._skip = 0

    def window_now(self):
        return self.window if self._skip == 0 else 0.0

    def found_by_polling(self):
        self._backoff //= 2

    def slept(self, polled, waited):
        if polled:
            self._backoff = min(2 * self._backoff + 1, self._MAX_BACKOFF)
            self._skip = self._backoff
        elif self._skip > 0 and waited <= self.window:
            self._skip -= 1


class _Socket:
    """The socket and what goes with it. Shared with the finalizer, so no reference back."""

    def __init__(self):
        self.sock = None
        self.write_lock = threading.Lock()
        self.generation = 0       # bumped on every new socket (under write_lock)
        self.poller = None
        # receive buffer: the reader's alone (one reader at a time)
        self.rbuf = bytearray(_RECV_BUFFER)
        self.rview = memoryview(self.rbuf)
        self.rstart = 0
        self.rend = 0
        self.goodbye_sent = False
        self.closed = False       # set by close() or the finalizer: never reconnect
        self.busy_poll = _BusyPoll(0)  # the reader's; set by Connection for plain TCP

    def attach(self, sock):
        self.sock = sock
        self.generation += 1
        self.rstart = self.rend = 0
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(sock, select.POLLIN)
        else:  # pragma: no cover - Windows
            self.poller = None

    def readable(self, timeout):
        """True when the socket has data (or EOF) within `timeout` seconds. The reader's
        alone: a poll object refuses concurrent use."""
        if self.poller is not None:
            return bool(self.poller.poll(max(0, int(timeout * 1000 + 0.999))))
        return bool(select.select([self.sock], [], [], max(0.0, timeout))[0])  # pragma: no cover

    @staticmethod
    def shutdown(state, stop):
        """Finalizer: stops heartbeats, says goodbye (never blocking) and closes."""
        state.closed = True
        stop.set()
        sock = state.sock
        if sock is None:
            return
        # A thread stuck writing a large frame must not hold up the interpreter's exit.
        locked = state.write_lock.acquire(timeout=1.0)
        try:
            if locked and not state.goodbye_sent:
                state.goodbye_sent = True
                try:
                    sock.send(protocol.frame_bytes(protocol.GOODBYE, 0, None),
                              getattr(socket, "MSG_DONTWAIT", 0))
                except OSError:
                    pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        finally:
            if locked:
                state.write_lock.release()


class _SendFailed(Exception):
    """A send that failed; `sent_any` tells whether part of the frame went out."""

    def __init__(self, cause, sent_any):
        super().__init__(str(cause))
        self.cause = cause
        self.sent_any = sent_any


def _send_parts(sock, parts):
    """Sends buffers in order; large ones straight from their memory (sendmsg).
    Raises _SendFailed."""
    sent_any = False
    try:
        if len(parts) == 1 or not hasattr(sock, "sendmsg"):
            view = memoryview(parts[0] if len(parts) == 1 else b"".join(parts)).cast("B")
            while view.nbytes:
                view = view[sock.send(view):]
                sent_any = True
            return
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        while views:
            sent = sock.sendmsg(views[:512])
            sent_any = True
            while sent:
                first = views[0]
                if sent >= first.nbytes:
                    sent -= first.nbytes
                    views.pop(0)
                else:
                    views[0] = first[sent:]
                    sent = 0
    except OSError as e:
        raise _SendFailed(e, sent_any) from None


def _wait_for(fd, event, deadline):
    """Waits until `fd` is ready for `event` (select.POLLIN or POLLOUT), or has an error or EOF
    (which the next TLS call reports); False when `deadline` (monotonic; None: never) passed.
    A poll object of its own: the reader's may be in use."""
    try:
        fd = fd.fileno()
    except (OSError, ValueError):
        return True
    if fd < 0:
        return True  # closed under us: the next TLS call says so
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, event)
        if deadline is None:
            return bool(poller.poll())
        return bool(poller.poll(max(0, int((deadline - time.monotonic()) * 1000 + 0.999))))
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())  # pragma: no cover
    sets = ([fd], [], [fd]) if event == select.POLLIN else ([], [fd], [fd])     # pragma: no cover
    return any(select.select(*sets, wait))                                       # pragma: no cover


_POLLIN = getattr(select, "POLLIN", 1)
_POLLOUT = getattr(select, "POLLOUT", 4)


class _TlsLink:
    """A TLS socket (ssl.SSLSocket, handshake done) shared by the reader and the writers.

    OpenSSL allows no two threads in one connection at once. So the socket is non-blocking,
    every TLS read and write runs under `lock` and returns at once (ssl.SSLWantReadError,
    SSLWantWriteError), and waiting for the socket happens outside the lock: the reader waits
    for data while a writer encrypts, and the other way round.

    It offers the socket methods that Connection uses (recv_into, send, sendall, sendmsg,
    recv for the idle check's peek, shutdown, setsockopt, close, fileno), so the plain-TCP
    code stays as it is, plus readable() and close_notify(). poll() does not see bytes that
    OpenSSL has already decrypted and keeps: readable() asks OpenSSL first (pending(), or a
    one-byte read that is kept in `stash` for the next recv_into)."""

    __slots__ = ("ssl", "lock", "stash", "failure", "closed", "__weakref__")

    def __init__(self, ssl_sock):
        ssl_sock.setblocking(False)
        self.ssl = ssl_sock
        self.lock = threading.Lock()
        self.stash = b""      # at most one byte, read ahead by readable() or the peek
        self.failure = None   # the LabhostError of a failed read: every later read repeats it
        self.closed = False

    def fileno(self):
        return self.ssl.fileno()

    @property
    def version(self):
        return self.ssl.version()

    def _closed_error(self):
        return OSError(9, "the TLS connection was closed")

    # ------------------------------------------------------------------ reading (the reader)

    def readable(self, timeout):
        """True when decrypted data, EOF or an error can be had within `timeout` seconds:
        then recv_into returns without waiting."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self.lock:
                if self.stash or self.failure is not None or self.closed or self.ssl.pending():
                    return True
                try:
                    self._read_ahead()
                    return True
                except ssl.SSLWantReadError:
                    event = _POLLIN
                except ssl.SSLWantWriteError:
                    event = _POLLOUT
                except OSError:
                    return True  # kept in `failure`: recv_into raises it
            if not _wait_for(self.ssl, event, deadline):
                return False

    def _read_ahead(self):
        """REQUIRES: lock held, stash empty. Reads one byte into the stash. EOF and failures
        are kept in `failure` (and raised); SSLWantReadError and SSLWantWriteError pass."""
        try:
            data = self.ssl.recv(1)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as e:
            self.failure = _tls_read_error(e)
            raise
        except OSError as e:
            self.failure = ConnectionLostError("receive failed: %s" % e)
            raise
        if not data:
            self.failure = ConnectionLostError("the daemon closed the connection")
        self.stash = data

    def recv_into(self, buffer, nbytes=0, flags=0):
        """Reads decrypted bytes into `buffer` (a writable memoryview), waiting until at least
        one is there; 0 at EOF. A TLS failure raises a LabhostError (AuthFailedError when the
        daemon refused this client's certificate)."""
        while True:
            with self.lock:
                if self.failure is not None:
                    raise _copy(self.failure)
                if self.closed:
                    raise self._closed_error()
                got = 0
                if self.stash:
                    buffer[0] = self.stash[0]
                    self.stash = b""
                    got = 1
                    if len(buffer) == 1 or not self.ssl.pending():
                        return 1
                try:
                    return got + self.ssl.recv_into(buffer[got:] if got else buffer)
                except ssl.SSLWantReadError:
                    event = _POLLIN
                except ssl.SSLWantWriteError:
                    event = _POLLOUT
                except ssl.SSLError as e:
                    if got:
                        return got
                    self.failure = _tls_read_error(e)
                    raise _copy(self.failure) from None
                if got:
                    return got
            _wait_for(self.ssl, event, None)

    def recv(self, bufsize, flags=0):
        """Only the idle check's peek (MSG_PEEK | MSG_DONTWAIT): one byte if one can be had at
        once (kept for the next recv_into: peeked, not taken), b"" at EOF; BlockingIOError when
        nothing is there yet. TLS has no peek, so the byte is read and kept."""
        with self.lock:
            if self.closed:
                raise self._closed_error()
            if self.failure is not None:
                raise ConnectionLostError(self.failure.message)
            if self.stash or self.ssl.pending():
                return b"\0"  # data waits: the link is open
            try:
                self._read_ahead()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise BlockingIOError() from None
            except OSError:
                raise ConnectionLostError(self.failure.message) from None
            return self.stash  # b"" at EOF

    # ------------------------------------------------------------------ writing (under write_lock)

    def send(self, data, flags=0):
        """Encrypts and sends `data`, waiting for the socket outside the lock; returns how many
        bytes went (all of them: OpenSSL writes whole buffers). With MSG_DONTWAIT in `flags`,
        one attempt that never waits (BlockingIOError)."""
        while True:
            with self.lock:
                if self.closed:
                    raise self._closed_error()
                try:
                    return self.ssl.send(data)
                except ssl.SSLWantWriteError:
                    event = _POLLOUT
                except ssl.SSLWantReadError:
                    event = _POLLIN
            if flags:
                raise BlockingIOError()
            # Retried with the same buffer, as OpenSSL requires after a partial record.
            _wait_for(self.ssl, event, None)

    def sendall(self, data):
        view = memoryview(data).cast("B")
        while view.nbytes:
            view = view[self.send(view):]

    def sendmsg(self, buffers):
        """For _send_parts: sends the first of `buffers` when it is large, straight from its
        memory, else the run of small ones before the next large one joined into one write (a
        frame's small parts need not each cost a TLS record). Returns the bytes sent."""
        first = buffers[0]
        if first.nbytes >= _TLS_JOIN_BELOW or len(buffers) == 1:
            self.sendall(first)
            return first.nbytes
        run = []
        size = 0
        for b in buffers:
            if b.nbytes >= _TLS_JOIN_BELOW or size + b.nbytes > 4 * _TLS_JOIN_BELOW:
                break
            run.append(b)
            size += b.nbytes
        self.sendall(b"".join(run))
        return size

    def close_notify(self):
        """Tells the daemon that this side is done (a TLS close_notify), without waiting for
        its answer. Best effort."""
        with self.lock:
            sslobj = getattr(self.ssl, "_sslobj", None)  # SSLSocket.unwrap() would drop it
            if sslobj is None or self.closed:
                return
            try:
                sslobj.shutdown()
            except (OSError, ValueError):
                pass  # SSLWantReadError: the close_notify went; the daemon's answer is not awaited

    # ------------------------------------------------------------------ the socket underneath

    def setsockopt(self, *args):
        self.ssl.setsockopt(*args)

    def shutdown(self, how):
        # The TCP socket's own shutdown: SSLSocket.shutdown() would drop the TLS state under a
        # reader (and the reader, woken, then sees EOF or the reset).
        socket.socket.shutdown(self.ssl, how)

    def close(self):
        locked = self.lock.acquire(timeout=1.0)
        try:
            self.closed = True
            self.ssl.close()
        finally:
            if locked:
                self.lock.release()


class _TlsSocket(_Socket):
    """_Socket for a TLS link: readability is OpenSSL's (decrypted data), not the socket's."""

    def readable(self, timeout):
        return self.sock.readable(timeout)


class _MidFrameTimeout(Exception):
    """The deadline passed with part of a frame read: the stream is out of step."""


class Connection:
    """A session with one daemon: calls, describe, ping, locks.

    ``Connection("127.0.0.1", 7701)`` or ``Connection.open("lab://127.0.0.1:7701")``.
    `timeout`: seconds to wait for each reply (None: as long as it takes);
    `connect_timeout`: seconds to connect and say hello; `client_name`: how the daemon names
    this client in lock reports and logs (default ``user@host``); `heartbeats`: ping every
    third of the lease while open; `reconnect`: resume the session after a broken connection;
    `max_payload`: largest reply accepted (checked before allocating); `secret`: the shared
    secret (str or bytes) for a daemon that requires one (default: secret_from_environment()).
    `busy_poll_us`: waiting for a reply, poll the socket this many microseconds before
    sleeping, while replies keep coming that soon (a quick call then returns without waiting
    for this thread to be woken; slow calls turn it off); 0 never polls. Plain TCP only.

    TLS, for a daemon whose host.json has ``tls``: `tls_ca`: the CA file (PEM) that signed the
    daemon's certificate (default $LABHOST_TLS_CA; TLS is used iff a CA file is known); the
    certificate must also name `host` (IP address or DNS name). `tls_cert`, `tls_key`: this
    client's certificate and key (PEM) for a daemon that verifies clients (default
    $LABHOST_TLS_CERT, $LABHOST_TLS_KEY). `ssl_context`: an ssl.SSLContext to use instead of
    those (then always TLS). The handshake counts against `connect_timeout`. Errors: a daemon
    certificate that does not check out, or the daemon refusing this client's, is
    AuthFailedError; a daemon without TLS is ConnectionLostError ("does not serve TLS"); a
    client without TLS at a TLS daemon gets TlsRequiredError.
    """

    def __init__(self, host, port, *, timeout=None, connect_timeout=5.0, client_name=None,
                 heartbeats=True, reconnect=True, max_payload=protocol.DEFAULT_MAX_PAYLOAD,
                 secret=None, tls_ca=None, tls_cert=None, tls_key=None, ssl_context=None,
                 busy_poll_us=50):
        self._secret = _secret_bytes(secret)  # first: a bad secret file fails before connecting
        if ssl_context is None:
            ssl_context = tls_context(tls_ca, tls_cert, tls_key)  # likewise bad TLS files
        elif not isinstance(ssl_context, _load_ssl().SSLContext):
            raise TypeError("ssl_context: expected an ssl.SSLContext, got %s" % type(ssl_context).__name__)
        self._ssl_context = ssl_context
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.client_name = client_name or default_client_name()
        self.reconnect = reconnect
        self.max_payload = max_payload
        self._cond = threading.Condition(threading.Lock())
        self._pending = {}
        self._reader_active = False
        self._broken = None        # the error that made the current socket unusable
        self._next_id = 1
        self._connect_lock = threading.Lock()  # one reconnect at a time
        self._stop = threading.Event()
        if isinstance(busy_poll_us, bool) or not isinstance(busy_poll_us, (int, float)) or busy_poll_us < 0:
            raise ValueError("busy_poll_us: expected a number of microseconds >= 0, got %r" % (busy_poll_us,))
        self._io = _Socket() if ssl_context is None else _TlsSocket()
        if ssl_context is None:
            self._io.busy_poll = _BusyPoll(busy_poll_us / 1e6)
        sock, self._welcome = self._open("")
        self._io.attach(sock)
        self._last_sent = time.monotonic()
        self._finalizer = weakref.finalize(self, _Socket.shutdown, self._io, self._stop)
        self._heartbeat_thread = None
        if heartbeats and self.lease > 0:
            self._heartbeat_thread = threading.Thread(
                target=_heartbeat_loop, args=(weakref.ref(self), self._stop),
                name="labhost heartbeat %s:%d" % (host, self.port), daemon=True)
            self._heartbeat_thread.start()

    @classmethod
    def open(cls, address, **options):
        """Connects to the daemon of a ``lab://HOST:PORT[/SERVICE]`` address."""
        a = parse_address(address)
        return cls(a.host, a.port, **options)

    # ------------------------------------------------------------------ properties

    @property
    def address(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "lab://%s:%d" % (host, self.port)

    @property
    def session_token(self):
        return self._welcome["session_token"]

    @property
    def daemon_name(self):
        return self._welcome["daemon"]

    @property
    def server_version(self):
        return self._welcome.get("server_version", "")

    @property
    def lease(self):
        """The daemon's lease in seconds: a session silent this long ends (with its locks)."""
        return self._welcome.get("lease_ms", 0) / 1000.0

    @property
    def resumed(self):
        """True when the last (re)connection resumed an earlier session."""
        return bool(self._welcome.get("resumed", False))

    @property
    def tls(self):
        """True when the connection uses TLS."""
        return self._ssl_context is not None

    @property
    def closed(self):
        return self._io.closed

    @property
    def _closed(self):
        return self._io.closed

    def __repr__(self):
        state = "closed" if self._closed else ("broken" if self._broken else "open")
        return "<labhost.Connection %s daemon %r %s>" % (self.address, self.daemon_name, state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ requests

    def call(self, service, method, args=(), kwargs=None, timeout=_DEFAULT):
        """Calls service.method(*args, **kwargs) and returns its result."""
        return self.call_prefixed(protocol.call_prefix(service, method), args, kwargs, timeout)

    def call_prefixed(self, prefix, args, kwargs, timeout=_DEFAULT):
        """call() with the message start from protocol.call_prefix (proxies keep it)."""
        out = bytearray(protocol.HEADER_SIZE)
        out += prefix
        e = codec.Encoder(out)
        e.sequence(args, 1)
        e.out += protocol.KWARGS_KEY
        if kwargs:
            e.mapping(kwargs, 1)
        else:
            e.out += protocol.EMPTY_MAP
        return self._expect(self._request(protocol.CALL, e.finish(), timeout), protocol.RESULT)

    def describe(self, service=""):
        """The daemon's description ({"daemon", "services"}), or one service's (with its
        methods: name, params, returns, doc) when `service` is given."""
        return self._expect(self._request_value(protocol.DESCRIBE, {"service": service}),
                            protocol.DESCRIPTION)

    def ping(self):
        """Round trip of one ping, in seconds."""
        start = time.perf_counter()
        self._expect(self._request_value(protocol.PING, None), protocol.PONG)
        return time.perf_counter() - start

    def lock(self, service, wait=0.0):
        """Locks `service` for this session, waiting up to `wait` seconds for a lock held by
        another session. Returns a LockStatus. Errors: LockedError, NotLockableError."""
        wait_ms = max(0, int(round(wait * 1000)))
        timeout = None if self.timeout is None else self.timeout + wait
        report = self._expect(self._request_value(
            protocol.LOCK, {"service": service, "wait_ms": wait_ms}, timeout), protocol.RESULT)
        return LockStatus.from_report(report)

    def unlock(self, service):
        """Releases this session's lock. Errors: NotLockOwnerError."""
        self._expect(self._request_value(
            protocol.UNLOCK, {"service": service, "force": False, "admin_secret": ""}),
            protocol.RESULT)

    def force_unlock(self, service, admin_secret):
        """Releases another session's lock (administrators). Errors: NotAuthorisedError."""
        self._expect(self._request_value(
            protocol.UNLOCK, {"service": service, "force": True, "admin_secret": admin_secret}),
            protocol.RESULT)

    def lock_status(self, service=""):
        """LockStatus of one service, or a list of them for every service when `service` is
        empty."""
        reports = self._expect(self._request_value(protocol.LOCK_STATUS, {"service": service}),
                               protocol.RESULT)
        if not isinstance(reports, list):
            raise BadMessageError("lock_status: expected a list")
        statuses = [LockStatus.from_report(r) for r in reports]
        if service:
            if len(statuses) != 1:
                raise BadMessageError("lock_status: expected one report")
            return statuses[0]
        return statuses

    def resume(self):
        """Drops the link the way a network failure would, reconnects and presents the
        session token. True when the daemon still had the session (with its locks)."""
        with self._cond:
            if self._closed:
                raise ConnectionLostError("the client closed this connection")
            if self._broken is None:
                self._break(ConnectionLostError("reconnecting"), abortive=True)
        return self._resume(explicit=True)

    def close(self):
        """Says goodbye and closes: the daemon ends the session and releases its locks.
        Requests in flight raise ConnectionLostError. Idempotent."""
        with self._cond:
            io = self._io
            if io.closed:
                return
            io.closed = True
            self._stop.set()
            if self._broken is None and io.write_lock.acquire(timeout=1.0):
                try:
                    if not io.goodbye_sent:
                        io.goodbye_sent = True
                        io.sock.sendall(protocol.frame_bytes(protocol.GOODBYE, 0, None))
                        if self._ssl_context is not None:
                            io.sock.close_notify()
                except OSError:
                    pass
                finally:
                    io.write_lock.release()
            self._break(ConnectionLostError("the client closed this connection"), abortive=False)
            self._cond.wait_for(lambda: not self._reader_active, timeout=5.0)
        self._finalizer()
        t = self._heartbeat_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)

    # ------------------------------------------------------------------ machinery

    def _request_value(self, message_type, payload, timeout=_DEFAULT, busy_poll=True):
        parts = codec.encode_into(bytearray(protocol.HEADER_SIZE), payload)
        return self._request(message_type, parts, timeout, busy_poll)

    def _expect(self, reply, expected):
        message_type, payload = reply
        value = codec.decode(payload, _PAD)
        if message_type == protocol.ERROR:
            raise protocol.error_from(value)
        if message_type != expected:
            raise BadMessageError("expected %s, got %s" % (
                protocol.MESSAGE_NAMES[expected], protocol.MESSAGE_NAMES.get(message_type, message_type)))
        return value

    def _idle_link_closed(self):
        """True when nothing is in flight and the daemon has closed the socket (EOF waiting
        to be read): then the next request reconnects first instead of failing. Skipped (a
        syscall saved) right after a request: a caller in a loop has a fresh link."""
        io = self._io
        if not _HAS_DONTWAIT or self._pending or self._reader_active or io.rend > io.rstart \
                or time.monotonic() - self._last_sent < _IDLE_CHECK_AFTER:
            return False
        try:  # no poll() here: the reader alone may use the poll object
            return io.sock.recv(1, _MSG_PEEK_NOWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _request(self, message_type, parts, timeout=_DEFAULT, busy_poll=True):
        """Sends one request and waits for its reply: (type, payload buffer). As the reader,
        polls before sleeping when `busy_poll` (see _BusyPoll)."""
        size = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts) \
            - protocol.HEADER_SIZE
        if size > self.max_payload:
            raise BadFrameError("request payload of %d bytes exceeds the maximum of %d"
                                % (size, self.max_payload))
        if timeout is _DEFAULT:
            timeout = self.timeout
        cond = self._cond
        for attempt in (1, 2):
            if self._broken is not None or self._idle_link_closed():
                with cond:
                    if self._broken is None and not self._pending and not self._reader_active:
                        self._break(ConnectionLostError("the daemon closed the connection"))
                if self.reconnect and not self._closed and _resumable(self._broken):
                    self._resume()
            pending = _Pending()
            with cond:
                if self._closed:
                    raise ConnectionLostError("the client closed this connection")
                if self._broken is not None:
                    raise _copy(self._broken)
                request_id = self._next_id
                self._next_id = request_id + 1 if request_id < 0xFFFFFFFF else 1
                self._pending[request_id] = pending
                generation = self._io.generation
            protocol.pack_header(parts[0], message_type, request_id, size)
            if self._send(parts, generation, request_id, pending):
                break
            # Not a byte of it left: the link broke first, so the request surely did not
            # run. Once more on a new connection.
            if attempt == 2 or not self.reconnect:
                raise ConnectionLostError("the connection broke before the request was sent")

        deadline = None if timeout is None else time.monotonic() + timeout
        with cond:
            try:
                while not pending.done:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LabhostTimeoutError("no reply within %g s" % timeout)
                    if not self._reader_active:
                        self._reader_active = True
                        cond.release()
                        try:
                            self._read_one(deadline, busy_poll)
                        finally:
                            cond.acquire()
                            self._reader_active = False
                            cond.notify_all()  # a follower takes over reading
                        continue
                    cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except BaseException:  # timeout, or KeyboardInterrupt: its reply will be dropped
                self._pending.pop(request_id, None)
                raise
        if pending.error is not None:
            raise pending.error
        return pending.type, pending.payload

    def _send(self, parts, generation, request_id, pending):
        """Writes a request's frame. True when sent; False when not a byte of it went out
        (the link had broken: the caller may retry on a new one). A frame partly written
        breaks the link (the stream is out of step) and raises ConnectionLostError."""
        io = self._io
        try:
            with io.write_lock:
                if io.generation != generation or pending.done:  # broken since the id was taken
                    sent = False
                else:
                    _send_parts(io.sock, parts)
                    sent = True
        except _SendFailed as e:
            with self._cond:
                self._pending.pop(request_id, None)
                if io.generation == generation:
                    self._break(ConnectionLostError("send failed: %s" % e.cause))
            if not e.sent_any:
                return False
            raise ConnectionLostError("send failed: %s" % e.cause) from None
        except BaseException:  # KeyboardInterrupt in the middle of a frame
            with self._cond:
                self._pending.pop(request_id, None)
                if io.generation == generation:
                    self._break(ConnectionLostError("interrupted while sending a request"))
            raise
        if not sent:
            with self._cond:
                self._pending.pop(request_id, None)
            return False
        self._last_sent = time.monotonic()
        return True

    def _read_one(self, deadline, busy_poll):
        """As the reader (unlocked): reads one frame and hands it to its waiter. A failure
        breaks the connection for everyone (the stream is out of step)."""
        io = self._io
        try:
            frame = self._read_frame(io, deadline, busy_poll)
        except _MidFrameTimeout:
            with self._cond:
                self._break(ConnectionLostError("no complete reply in time: the link was dropped"))
            return
        except LabhostError as e:
            with self._cond:
                self._break(e)
            return
        except OSError as e:
            with self._cond:
                self._break(ConnectionLostError("receive failed: %s" % e))
            return
        except BaseException:
            if io.rend == -1:  # interrupted inside a large payload
                with self._cond:
                    self._break(ConnectionLostError("interrupted while reading a reply"))
            raise
        if frame is None:
            return  # deadline passed between frames: the stream is intact
        message_type, request_id, payload = frame
        if request_id == 0 and message_type == protocol.ERROR:
            # A connection-level error (busy, bad_frame) that the daemon sends just before it
            # closes the connection.
            try:
                error = protocol.error_from(codec.decode(payload, _PAD))
            except LabhostError as e:
                error = e
            with self._cond:
                self._break(error)
            return
        with self._cond:
            pending = self._pending.pop(request_id, None)
            if pending is not None:  # replies nobody waits for (timed out) are dropped
                pending.type = message_type
                pending.payload = payload
                pending.done = True
                self._cond.notify_all()

    @staticmethod
    def _receive(io, view, deadline, busy_poll):
        """recv_into(view) as the reader: polls first when the policy says so; None when the
        deadline passed first."""
        policy = io.busy_poll
        window = policy.window_now() if busy_poll else 0.0
        if window:
            recv_into = io.sock.recv_into
            until = time.perf_counter() + window
            while True:
                try:
                    n = recv_into(view, 0, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    if time.perf_counter() >= until:
                        break
                    continue
                policy.found_by_polling()
                return n
        slept_from = time.perf_counter()
        if deadline is not None and not io.readable(deadline - time.monotonic()):
            return None
        n = io.sock.recv_into(view)
        if busy_poll:
            policy.slept(window > 0, time.perf_counter() - slept_from)
        return n

    def _fill(self, io, deadline, busy_poll):
        """Reads more bytes into the receive buffer; False when the deadline passed first."""
        if io.rend == len(io.rbuf):
            if io.rstart == 0:  # pragma: no cover - frames that large take the other path
                raise BadFrameError("receive buffer overflow")
            kept = io.rend - io.rstart
            io.rbuf[:kept] = io.rbuf[io.rstart:io.rend]
            io.rstart, io.rend = 0, kept
        n = self._receive(io, io.rview[io.rend:], deadline, busy_poll)
        if n is None:
            return False
        if n == 0:
            raise ConnectionLostError("the daemon closed the connection")
        io.rend += n
        return True

    def _read_frame(self, io, deadline, busy_poll):
        """(type, request id, payload buffer) of the next frame, or None at the deadline.
        The payload buffer holds the payload from offset _PAD."""
        while io.rend - io.rstart < protocol.HEADER_SIZE:
            if not self._fill(io, deadline, busy_poll):
                return None
        message_type, _, request_id, size = protocol.parse_header(
            io.rview[io.rstart:io.rstart + protocol.HEADER_SIZE], self.max_payload)
        total = protocol.HEADER_SIZE + size
        if total <= len(io.rbuf):
            if io.rstart + total > len(io.rbuf):  # make room at the end
                kept = io.rend - io.rstart
                io.rbuf[:kept] = io.rbuf[io.rstart:io.rend]
                io.rstart, io.rend = 0, kept
            while io.rend - io.rstart < total:
                if not self._fill(io, deadline, busy_poll):
                    return None
            payload = bytearray(_PAD + size)
            payload[_PAD:] = io.rview[io.rstart + protocol.HEADER_SIZE:io.rstart + total]
            io.rstart += total
            if io.rstart == io.rend:
                io.rstart = io.rend = 0
            return message_type, request_id, payload
        # A large frame: the payload goes straight into its own buffer (numpy arrays share it).
        payload = bytearray(_PAD + size)
        view = memoryview(payload)
        have = io.rend - io.rstart - protocol.HEADER_SIZE
        view[_PAD:_PAD + have] = io.rview[io.rstart + protocol.HEADER_SIZE:io.rend]
        got = _PAD + have
        io.rstart = 0
        io.rend = -1  # marks "inside a large payload" until it is complete
        while got < len(payload):
            n = self._receive(io, view[got:], deadline, busy_poll)
            if n is None:
                raise _MidFrameTimeout()
            if n == 0:
                raise ConnectionLostError("the daemon closed the connection")
            got += n
        io.rend = 0
        return message_type, request_id, payload

    def _break(self, error, abortive=True):
        """Fails every waiting request and wakes the reader. REQUIRES: _cond held.

        `abortive` drops the link as a network failure would (the daemon sees a reset and
        keeps the session for a resume); otherwise the daemon sees an orderly close."""
        if self._broken is None:
            self._broken = error
        for pending in self._pending.values():
            pending.error = _copy(self._broken)
            pending.done = True
        self._pending.clear()
        sock = self._io.sock
        try:
            if abortive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.shutdown(socket.SHUT_RD)
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._cond.notify_all()

    def _resume(self, explicit=False):
        """Replaces a broken socket by a new one that presents the session token. Unless
        `explicit` (resume()), not after the daemon refused this client (_resumable)."""
        with self._connect_lock:
            with self._cond:
                if self._closed:
                    raise ConnectionLostError("the client closed this connection")
                if self._broken is None:
                    return self.resumed  # another thread did it
                if not explicit and not _resumable(self._broken):
                    raise _copy(self._broken)  # refused while this thread waited for the lock
                if not self._cond.wait_for(lambda: not self._reader_active, timeout=10.0):
                    raise ConnectionLostError("the reader of the broken connection did not stop")
                token = self._welcome["session_token"]
            try:
                sock, welcome = self._open(token)
            except (AuthFailedError, TlsRequiredError) as e:
                # The daemon refused this client: a new connection would be refused again, so
                # no automatic reconnect after this one (resume() still tries).
                with self._cond:
                    if self._broken is not None:
                        self._broken = e
                raise
            with self._cond:
                if self._closed:
                    sock.close()
                    raise ConnectionLostError("the client closed this connection")
                io = self._io
                with io.write_lock:
                    old = io.sock
                    io.attach(sock)
                    io.goodbye_sent = False
                try:
                    old.close()
                except OSError:
                    pass
                self._welcome = welcome
                self._broken = None
                self._last_sent = time.monotonic()
            if not welcome.get("resumed"):
                log.warning("labhost: %s: the session could not be resumed (the daemon restarted "
                            "or the lease ran out); a new one was opened, without earlier locks",
                            self.address)
            return bool(welcome.get("resumed"))

    def _open(self, token):
        """Connects and shakes hands (TLS when used, then hello, and with a secret challenge
        and authenticate), before anyone else may use the socket. The whole handshake is
        bounded by connect_timeout. Returns (socket, or _TlsLink with TLS; welcome)."""
        where = "%s:%d" % (self.host, self.port)
        timeout = self.connect_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise ConnectionLostError("cannot connect to %s: %s" % (where, e)) from None
        if self._ssl_context is not None:
            sock = self._tls_handshake(sock, where, deadline)  # closes sock when it fails
        try:
            if self._ssl_context is None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            secret = self._secret
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
            if self._ssl_context is not None:
                return _TlsLink(sock), welcome
            sock.settimeout(None)
            return sock, welcome
        except socket.timeout:
            sock.close()
            raise ConnectionLostError("no welcome from %s within %g s" % (where, timeout)) from None
        except _SSL_ERROR as e:  # an alert on the first read: the daemon refused our certificate
            sock.close()
            raise _tls_handshake_error(e, where) from None
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
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if deadline is not None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
            return self._ssl_context.wrap_socket(sock, server_hostname=self.host)
        except socket.timeout:
            sock.close()
            raise ConnectionLostError("no TLS handshake with %s within %g s"
                                      % (where, self.connect_timeout)) from None
        except _SSL_ERROR as e:
            sock.close()
            raise _tls_handshake_error(e, where) from None
        except OSError as e:
            sock.close()
            raise ConnectionLostError("TLS handshake with %s failed: %s" % (where, e)) from None
        except BaseException:
            sock.close()
            raise

    def _recv_handshake_frame(self, sock, deadline):
        """(type, decoded payload) of one frame on a socket nobody else uses yet."""
        header = self._recv_exact(sock, protocol.HEADER_SIZE, deadline)
        message_type, _, _, size = protocol.parse_header(header, self.max_payload)
        return message_type, codec.decode(self._recv_exact(sock, size, deadline))

    @staticmethod
    def _recv_exact(sock, size, deadline=None):
        data = bytearray(size)
        view = memoryview(data)
        got = 0
        while got < size:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
            n = sock.recv_into(view[got:])
            if n == 0:
                raise ConnectionLostError("the daemon closed the connection")
            got += n
        return data

    def _beat(self):
        """One heartbeat: a ping when nothing was sent for a period; a reconnect when broken."""
        if self._closed:
            return
        if self._broken is not None:
            if self.reconnect and _resumable(self._broken):
                self._resume()
            return
        if time.monotonic() - self._last_sent >= self._heartbeat_period() * 0.9:
            self._expect(self._request_value(protocol.PING, None, None, busy_poll=False), protocol.PONG)

    def _heartbeat_period(self):
        return max(self.lease / 3.0, 0.01)


def _heartbeat_loop(ref, stop):
    """The heartbeat thread. Holds the connection only while beating, so an unreferenced
    connection is still collected (and closed)."""
    while True:
        conn = ref()
        if conn is None:
            return
        period = conn._heartbeat_period()
        del conn
        if stop.wait(period):
            return
        conn = ref()
        if conn is None:
            return
        try:
            conn._beat()
        except (LabhostError, OSError) as e:  # the next beat retries
            log.debug("labhost heartbeat: %s", e)
        finally:
            del conn
