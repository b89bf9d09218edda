"""The transport layer: one connected socket to a daemon, plain TCP or TLS over it.

It connects with a timeout, writes whole frames, reads frames into its receive buffer
against a deadline (polling the socket for a short while before sleeping on it, _BusyPoll),
and tells whether a link left idle was closed by the daemon meanwhile. It knows frames, not
requests: matching replies to requests is the multiplexer's job (multiplexer.py).

Thread-safety: one writer at a time, under `write_lock`, writes whole frames; one reader at a
time (the multiplexer's reader) uses the receive buffer, the poll object and the busy-poll
policy, so these take no lock. `attach` (a new socket) runs under `write_lock` with no reader
active. An OpenSSL connection must not be used by two threads at once, while here one thread
reads as others write: a TLS link (_TlsLink) is non-blocking, runs every TLS read and write
under a lock of its own that returns at once, and waits for the socket outside that lock.
Plain TCP does not go through any of this.
"""

import os
import select
import socket
import threading
import time

ssl = None  # the ssl module, imported when a connection uses TLS (load_ssl)

from . import codec, protocol
from .errors import AuthFailedError, BadFrameError, ConnectionLostError, make_error

__all__ = ["Transport", "TlsTransport", "TlsLink", "MidFrameTimeout", "SendFailed", "Payload",
           "new_payload", "LOOKAHEAD",
           "IDLE_CHECK_AFTER", "connect", "recv_exact", "send_parts", "load_ssl", "tls_context",
           "tls_handshake_error", "tls_read_error", "copy_error"]

ALIGNMENT = 16   # a payload's first typed array starts at a multiple of this in its buffer
LOOKAHEAD = 256  # payload bytes looked at to find that array before the buffer is allocated
_RECV_BUFFER = 256 * 1024
_MSG_PEEK_NOWAIT = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
_HAS_DONTWAIT = hasattr(socket, "MSG_DONTWAIT")
IDLE_CHECK_AFTER = 0.005  # seconds since the last frame sent after which a link is checked
SSL_ERROR = ()  # ssl.SSLError once the ssl module is loaded; until then nothing to catch
_TLS_JOIN_BELOW = 16 * 1024  # TLS: smaller buffers of a frame are joined into one record run
# Alerts by which a daemon refuses this client's certificate (OpenSSL reason codes), during
# the handshake or, with TLS 1.3, on the first read after it.
_CLIENT_CERTIFICATE_REFUSALS = frozenset((
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_HANDSHAKE_FAILURE",
))


class Payload(bytearray):
    """A received frame's payload buffer: the payload from offset `start`, which puts the
    elements of its first typed array (a result's frame, an event's value) on an ALIGNMENT
    boundary, so that the numpy array decoded from it, which shares this buffer, is aligned."""

    __slots__ = ("start",)


def new_payload(head, size):
    """An empty Payload for a payload of `size` bytes that begins with `head` (at least its
    first min(size, LOOKAHEAD) bytes); the caller copies the payload in from `start`."""
    offset = codec.first_array_data(head)
    start = -offset % ALIGNMENT if offset is not None else 0
    payload = Payload(start + size)
    payload.start = start
    return payload


def copy_error(error):
    """A fresh exception like `error`, for raising in another thread."""
    return make_error(error.code, error.message, error.name)


# --------------------------------------------------------------------------- TLS setup


def load_ssl():
    """The ssl module, imported on first use: a client without TLS does not pay for it."""
    global ssl, SSL_ERROR
    if ssl is None:
        try:
            import ssl as module
        except ImportError:  # pragma: no cover - a Python built without OpenSSL
            raise AuthFailedError("TLS: this Python has no ssl module") from None
        SSL_ERROR = module.SSLError
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
    load_ssl()
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


def tls_handshake_error(e, where):
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


def tls_read_error(e):
    """The labhost error for an ssl.SSLError on a read after the handshake. With TLS 1.3 a
    daemon checks the client's certificate after the client's side of the handshake is done:
    its refusal arrives as an alert on the first read."""
    if getattr(e, "reason", None) in _CLIENT_CERTIFICATE_REFUSALS:
        return AuthFailedError("the daemon refused this client's TLS certificate (%s)" % _tls_reason(e))
    return ConnectionLostError("TLS receive failed: %s" % _tls_reason(e))


# --------------------------------------------------------------------------- connecting


def bound_silence(sock, lease_ms):
    """Rule 6 (docs/clients.md): the kernel gives the connection up when the daemon's host
    stops acknowledging for a lease (at least a second): bytes unacknowledged that long
    (TCP_USER_TIMEOUT), or unanswered keepalive probes on an idle link, one every third of
    the lease. A daemon that is only busy still acknowledges. Linux only; elsewhere a no-op."""
    bound = max(int(lease_ms), 1000)
    third = max(1, bound // 3000)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, bound)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, third)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, third)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except (AttributeError, OSError):
        pass  # a platform without these options: heartbeats still keep the session


def connect(host, port, timeout):
    """A TCP socket connected to host:port within `timeout` seconds (None: the system's),
    with TCP_NODELAY, still blocking with that timeout. Raises ConnectionLostError."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise ConnectionLostError("cannot connect to %s:%d: %s" % (host, port, e)) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:
        sock.close()
        raise ConnectionLostError("cannot connect to %s:%d: %s" % (host, port, e)) from None
    return sock


def recv_exact(sock, size, deadline=None):
    """Exactly `size` bytes from a socket nobody else uses yet (the handshake's), before the
    monotonic `deadline` (None: none); socket.timeout when it passes."""
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


# --------------------------------------------------------------------------- writing


class SendFailed(Exception):
    """A send that failed; `sent_any` tells whether part of the frame went out."""

    def __init__(self, cause, sent_any):
        super().__init__(str(cause))
        self.cause = cause
        self.sent_any = sent_any


def send_parts(sock, parts):
    """Sends buffers in order; large ones straight from their memory (sendmsg).
    Raises SendFailed."""
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
        raise SendFailed(e, sent_any) from None


# --------------------------------------------------------------------------- reading


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


class MidFrameTimeout(Exception):
    """The deadline passed with part of a frame read: the stream is out of step."""


class Transport:
    """One link to the daemon: the connected socket (replaced on every reconnection), the
    lock that keeps frames whole, and the receive buffer. Shared with the connection's
    finalizer, so it holds no reference back to the layers above."""

    def __init__(self, max_payload=protocol.DEFAULT_MAX_PAYLOAD, busy_poll_window=0.0):
        self.sock = None
        self.write_lock = threading.Lock()
        self.generation = 0       # bumped on every new socket (under write_lock)
        self.poller = None
        self.max_payload = max_payload  # largest frame payload accepted, checked on the header
        # receive buffer: the reader's alone (one reader at a time)
        self.rbuf = bytearray(_RECV_BUFFER)
        self.rview = memoryview(self.rbuf)
        self.rstart = 0
        self.rend = 0
        self.last_sent = 0.0      # monotonic time the last frame went out (heartbeats, idle check)
        self.goodbye_sent = False
        self.closed = False       # set by close() or the finalizer: never reconnect
        self.busy_poll = _BusyPoll(busy_poll_window)  # the reader's

    def attach(self, sock):
        """Starts using a new connected socket. REQUIRES: write_lock held, no reader."""
        self.sock = sock
        self.generation += 1
        self.rstart = self.rend = 0
        self.goodbye_sent = False
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

    def say_goodbye(self, lock_timeout):
        """Sends goodbye (the daemon then ends the session), and with TLS a close_notify,
        unless said already; gives up when the write lock is not free within `lock_timeout`
        seconds (a thread stuck writing a large frame). Best effort."""
        if not self.write_lock.acquire(timeout=lock_timeout):
            return
        try:
            if not self.goodbye_sent:
                self.goodbye_sent = True
                self.sock.sendall(protocol.frame_bytes(protocol.GOODBYE, 0, None))
                if isinstance(self.sock, TlsLink):
                    self.sock.close_notify()
        except OSError:
            pass
        finally:
            self.write_lock.release()

    def shutdown(self):
        """The finalizer's end: says goodbye (never blocking) and closes."""
        self.closed = True
        sock = self.sock
        if sock is None:
            return
        # A thread stuck writing a large frame must not hold up the interpreter's exit.
        locked = self.write_lock.acquire(timeout=1.0)
        try:
            if locked and not self.goodbye_sent:
                self.goodbye_sent = True
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
                self.write_lock.release()

    def drop(self, abortive):
        """Stops the link and wakes a reader blocked on it. `abortive` drops it as a network
        failure would (the daemon sees a reset and keeps the session for a resume);
        otherwise the daemon sees an orderly close."""
        sock = self.sock
        try:
            if abortive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.shutdown(socket.SHUT_RD)
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def closed_while_idle(self):
        """The idle-link check, for a link with nothing in flight (no reader: the socket can be
        peeked at): True when the daemon has closed it (EOF waiting to be read). Skipped (a
        syscall saved) right after a frame went out, as a caller in a loop has a fresh link,
        and while bytes wait in the buffer."""
        if not _HAS_DONTWAIT or self.rend > self.rstart \
                or time.monotonic() - self.last_sent < IDLE_CHECK_AFTER:
            return False
        try:  # no poll() here: the reader alone may use the poll object
            return self.sock.recv(1, _MSG_PEEK_NOWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def receive(self, view, deadline, busy_poll):
        """recv_into(view) as the reader: polls first when the policy says so; None when the
        deadline passed first."""
        policy = self.busy_poll
        window = policy.window_now() if busy_poll else 0.0
        if window:
            recv_into = self.sock.recv_into
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
        if deadline is not None and not self.readable(deadline - time.monotonic()):
            return None
        n = self.sock.recv_into(view)
        if busy_poll:
            policy.slept(window > 0, time.perf_counter() - slept_from)
        return n

    def fill(self, deadline, busy_poll):
        """Reads more bytes into the receive buffer; False when the deadline passed first."""
        if self.rend == len(self.rbuf):
            if self.rstart == 0:  # pragma: no cover - frames that large take the other path
                raise BadFrameError("receive buffer overflow")
            kept = self.rend - self.rstart
            self.rbuf[:kept] = self.rbuf[self.rstart:self.rend]
            self.rstart, self.rend = 0, kept
        n = self.receive(self.rview[self.rend:], deadline, busy_poll)
        if n is None:
            return False
        if n == 0:
            raise ConnectionLostError("the daemon closed the connection")
        self.rend += n
        return True

    def read_frame(self, deadline, busy_poll, deadline_to_begin=False):
        """(type, request id, Payload) of the next frame, or None when the deadline passed
        before any byte of it came. Raises MidFrameTimeout when the deadline passed inside a
        frame; with `deadline_to_begin` the deadline bounds only the wait for the frame's
        first byte, and a frame that began is read whole (a subscriber polling with a short
        timeout must not cut a large event in two)."""
        while self.rend - self.rstart < protocol.HEADER_SIZE:
            if deadline_to_begin and self.rend > self.rstart:
                deadline = None
            if not self.fill(deadline, busy_poll):
                if self.rend > self.rstart:
                    raise MidFrameTimeout()
                return None
        if deadline_to_begin:
            deadline = None
        message_type, _, request_id, size = protocol.parse_header(
            self.rview[self.rstart:self.rstart + protocol.HEADER_SIZE], self.max_payload)
        total = protocol.HEADER_SIZE + size
        # A whole frame that fits the receive buffer is read there first; of a larger one, the
        # first bytes of its payload, which say where its buffer's start must be.
        needed = total if total <= len(self.rbuf) else protocol.HEADER_SIZE + min(size, LOOKAHEAD)
        if self.rstart + needed > len(self.rbuf):  # make room at the end
            kept = self.rend - self.rstart
            self.rbuf[:kept] = self.rbuf[self.rstart:self.rend]
            self.rstart, self.rend = 0, kept
        while self.rend - self.rstart < needed:
            if not self.fill(deadline, busy_poll):
                raise MidFrameTimeout()
        body = self.rstart + protocol.HEADER_SIZE
        payload = new_payload(self.rview[body:body + min(size, LOOKAHEAD)], size)
        start = payload.start
        if total <= len(self.rbuf):
            payload[start:] = self.rview[body:body + size]
            self.rstart += total
            if self.rstart == self.rend:
                self.rstart = self.rend = 0
            return message_type, request_id, payload
        # A large frame: the rest of the payload goes straight into its buffer (numpy arrays
        # share it).
        view = memoryview(payload)
        have = self.rend - body
        view[start:start + have] = self.rview[body:self.rend]
        got = start + have
        self.rstart = 0
        self.rend = -1  # marks "inside a large payload" until it is complete
        while got < len(payload):
            n = self.receive(view[got:], deadline, busy_poll)
            if n is None:
                raise MidFrameTimeout()
            if n == 0:
                raise ConnectionLostError("the daemon closed the connection")
            got += n
        self.rend = 0
        return message_type, request_id, payload

    @property
    def inside_large_frame(self):
        """True while the reader is inside a large payload (interrupted there, the stream is
        out of step)."""
        return self.rend == -1


class TlsTransport(Transport):
    """Transport for a TLS link: readability is OpenSSL's (decrypted data), not the socket's;
    never busy-polls."""

    def __init__(self, max_payload=protocol.DEFAULT_MAX_PAYLOAD):
        super().__init__(max_payload, 0.0)

    def readable(self, timeout):
        return self.sock.readable(timeout)


# --------------------------------------------------------------------------- TLS link


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


class TlsLink:
    """A TLS socket (ssl.SSLSocket, handshake done) shared by the reader and the writers.

    OpenSSL allows no two threads in one connection at once. So the socket is non-blocking,
    every TLS read and write runs under `lock` and returns at once (ssl.SSLWantReadError,
    SSLWantWriteError), and waiting for the socket happens outside the lock: the reader waits
    for data while a writer encrypts, and the other way round.

    It offers the socket methods that Transport uses (recv_into, send, sendall, sendmsg,
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
            self.failure = tls_read_error(e)
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
                    raise copy_error(self.failure)
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
                    self.failure = tls_read_error(e)
                    raise copy_error(self.failure) from None
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
        """For send_parts: sends the first of `buffers` when it is large, straight from its
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
