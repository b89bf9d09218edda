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

Subscriptions belong to the session (protocol version 2): the events the reader meets go to
their subscription's queue (events.EventRouter, guarded by the multiplexer's lock). They
survive a resume; when a new link opens a new session (the daemon restarted, or the lease
passed), or the client closes, every subscription ends with ConnectionLostError. The error a
oneway call gets goes to the `on_oneway_error` callback, and is counted.

Thread-safety: one reconnection at a time (`_connect_lock`), run by whichever thread finds
the link broken first, a caller, a subscriber waiting for events or the heartbeat thread; the
others find it mended. The welcome is replaced whole. The heartbeat thread holds its session
only while it beats, so a connection nobody references is still collected.
"""

import getpass
import logging
import os
import socket
import threading
import time
import weakref

from . import codec, protocol, transport
from .errors import (AuthFailedError, ConnectionLostError, LabhostError, TlsRequiredError,
                     UnsupportedVersionError)
from .events import EventRouter
from .multiplexer import expect
from .transport import TlsLink, copy_error, recv_exact

__all__ = ["Session", "SessionBase", "weakly", "REFUSALS", "resumable", "default_client_name",
           "secret_from_environment", "secret_bytes", "end_session", "security",
           "heartbeat_period", "SESSION_GONE", "report_oneway_error", "restore_steps", "RESUME"]

log = logging.getLogger("labhost")

# Refusals of this client that a new connection would only repeat: not reconnected on their
# own (resume() still tries).
REFUSALS = (AuthFailedError, TlsRequiredError, UnsupportedVersionError)

# Why every subscription ends when a reconnection opened a new session.
SESSION_GONE = ("the daemon no longer had this session (it restarted, or the lease passed): "
                "its subscriptions ended")

# A subscriber whose link broke retries the reconnection after these many seconds, doubling,
# for at most a lease after the break (the daemon keeps the session that long).
RESUME_RETRY_FIRST = 0.1
RESUME_RETRY_MOST = 2.0


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


def security(secret, tls_ca, tls_cert, tls_key, ssl_context):
    """(secret bytes or None, ssl.SSLContext or None) from a connection's options, read before
    connecting so that a bad secret file or TLS file fails first."""
    secret = secret_bytes(secret)
    if ssl_context is None:
        ssl_context = transport.tls_context(tls_ca, tls_cert, tls_key)
    elif not isinstance(ssl_context, transport.load_ssl().SSLContext):
        raise TypeError("ssl_context: expected an ssl.SSLContext, got %s" % type(ssl_context).__name__)
    return secret, ssl_context


def heartbeat_period(lease):
    """Rule 6: a ping is due a third of the lease after the last frame sent."""
    return max(lease / 3.0, 0.01)


def report_oneway_error(error):
    """What happens to the error of a oneway call when no on_oneway_error is given."""
    log.warning("labhost: a oneway call failed: %s", error)


RESUME = object()  # restore_steps' step: try Session.resume() now


def restore_steps(session, deadline):
    """The steps of a subscriber that found its session's link broken, without I/O, for the
    sync and the asyncio session alike: yields RESUME (the driver tries resume() and sends
    back the error it raised, or None) or seconds to wait before trying again. Tries while the
    rules allow a reconnect (reconnect on, no refusal) and the daemon may still keep the
    session, a lease after the break; retries after RESUME_RETRY_FIRST seconds, doubling up
    to RESUME_RETRY_MOST, within `deadline` (monotonic; None: none). Returns the error that
    ends the subscriptions, or None (restored, mended by someone else, or the deadline came)."""
    mux = session.mux
    wait = RESUME_RETRY_FIRST
    while mux.broken is not None and not mux.closed_for_good:
        error = mux.broken
        if session.reconnect and resumable(error):
            error = yield RESUME
            if error is None:
                return None
            now = time.monotonic()
            give_up_at = mux.broken_at + max(session.lease, 0.0)
            if not isinstance(error, REFUSALS) and now < give_up_at:  # not reachable yet
                if deadline is not None and now >= deadline:
                    return None
                until = min(give_up_at, now + wait, deadline if deadline is not None else give_up_at)
                yield max(0.0, until - now)
                wait = min(2 * wait, RESUME_RETRY_MOST)
                continue
        return error if mux.broken is not None else None
    return None


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


def weakly(method):
    """`method` called through a weak reference, or not at all once its object is gone: a
    lower layer's hook must not keep the session alive (session and multiplexer would form a
    cycle, which keeps a closed connection's buffers until the garbage collector runs; an
    asyncio link is held by its event loop)."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        bound = ref()
        if bound is not None:
            bound(*args)
    return call


class SessionBase:
    """What the sync and asyncio sessions share: the welcome's facts, when a heartbeat is due
    (rule 6), and the frames that answer no request (events, the errors of oneway calls).
    The subclass sets `mux` (with `broken` and `last_sent`, and the hooks on_event and
    on_oneway_error) before calling __init__."""

    def __init__(self, host, port, connect_timeout, client_name, secret, ssl_context, reconnect,
                 on_oneway_error):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self.secret = secret
        self.ssl_context = ssl_context
        self.welcome = None
        self.reconnect = reconnect
        self.events = EventRouter()
        self.on_oneway_error = on_oneway_error or report_oneway_error
        self.oneway_failures = 0
        self.mux.on_event = weakly(self.route_event)
        self.mux.on_oneway_error = weakly(self._oneway_failed)

    @property
    def address(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "lab://%s:%d" % (host, self.port)

    @property
    def lease(self):
        """The daemon's lease in seconds: a session silent this long ends (with its locks)."""
        return self.welcome.get("lease_ms", 0) / 1000.0 if self.welcome else 0.0

    @property
    def resumed(self):
        return bool(self.welcome.get("resumed", False))

    @property
    def version(self):
        """The protocol version of the session: 2, or 1 with a daemon that speaks no more."""
        return self.welcome["version"]

    def heartbeat_period(self):
        return heartbeat_period(self.lease)

    def next_beat_in(self):
        """Seconds until a heartbeat is due: a period after the last frame sent, so that the
        daemon never hears nothing for longer; a whole period while broken."""
        period = self.heartbeat_period()
        if self.mux.broken is not None:
            return period
        return min(period, max(0.0, self.mux.last_sent + period - time.monotonic()))

    def beat_due(self):
        """True when nothing was sent for (nearly) a heartbeat period."""
        return time.monotonic() - self.mux.last_sent >= self.heartbeat_period() * 0.9

    def route(self, subscription, payload):
        """An event frame's payload to its subscription's queue: the state it went to, or
        None. REQUIRES: the router's guard."""
        event = error = None
        try:
            event = protocol.parse_event(codec.decode(payload, payload.start))
        except LabhostError as e:
            error = e
        return self.events.route(subscription, event, error, len(payload))

    def _oneway_failed(self, error):
        """The multiplexer's hook for the error of a oneway call (on the reading thread, or the
        event loop)."""
        self.oneway_failures += 1
        try:
            self.on_oneway_error(error)
        except Exception:  # a faulty callback must not break the reading of the link
            log.exception("labhost: on_oneway_error raised")


class Session(SessionBase):
    """The session over the Multiplexer `mux` with the daemon at host:port. `secret`: bytes
    or None; `ssl_context`: an ssl.SSLContext for TLS, or None; `reconnect`: replace broken
    links by the rules (REFUSALS), else leave them broken. open_first() connects."""

    def __init__(self, mux, host, port, *, connect_timeout, client_name, secret, ssl_context,
                 reconnect, on_oneway_error=None):
        self.mux = mux
        self.stop = threading.Event()   # set by close() or the finalizer: heartbeats end
        self.heartbeat_thread = None
        self._connect_lock = threading.Lock()  # one reconnect at a time
        # events: guarded by mux.cond
        super().__init__(host, port, connect_timeout, client_name, secret, ssl_context,
                         reconnect, on_oneway_error)

    @property
    def reconnect(self):
        return self._reconnect

    @reconnect.setter
    def reconnect(self, on):
        self._reconnect = on
        self.mux.repair = weakly(self._repair) if on else None

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
            handshake = protocol.Handshake(self.client_name, token, self.secret, where)
            sock.sendall(handshake.hello_frame())
            while handshake.welcome is None:
                answer = handshake.answer(*self._recv_handshake_frame(sock, deadline))
                if answer is not None:
                    sock.sendall(answer)
            welcome = handshake.welcome
            transport.bound_silence(sock, welcome.get("lease_ms", 0))
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
                    # A new session has none of the old one's subscriptions: they end here.
                    self.events.end_all(ConnectionLostError(SESSION_GONE))
                    mux.cond.notify_all()
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

    # ------------------------------------------------------------------ events and oneway calls

    def route_event(self, subscription, payload):
        """The multiplexer's hook for an event frame (on the reading thread, unlocked): to its
        subscription's queue, waking whoever waits."""
        mux = self.mux
        with mux.cond:
            if self.route(subscription, payload) is not None:
                mux.cond.notify_all()

    def send_unsubscribes(self):
        """Tells the daemon about subscriptions whose owner was collected without closing them
        (EventRouter.abandoned); their replies are not awaited."""
        with self.mux.cond:
            ids = self.events.take_unsubscribes()
        for subscription in ids:
            try:
                self.mux.send_oneway(protocol.UNSUBSCRIBE, codec.encode_into(
                    bytearray(protocol.HEADER_SIZE), protocol.unsubscribe(subscription)))
            except LabhostError:
                return  # the link is down: the session, and with it the subscription, may be too

    def restore_for_events(self, deadline):
        """Called by a subscriber that found the link broken: reconnects, resuming the session
        and its subscriptions (restore_steps says when, and when to give up, which ends every
        subscription with the error). Returns when restored, ended, closed, or at `deadline`
        (monotonic; None: none)."""
        steps = restore_steps(self, deadline)
        try:
            step = next(steps)
            while True:
                if step is RESUME:
                    try:
                        self.resume()
                        step = steps.send(None)
                    except LabhostError as e:
                        step = steps.send(e)
                elif self.stop.wait(step):
                    return  # closed meanwhile
                else:
                    step = next(steps)
        except StopIteration as done:
            error = done.value
        if error is not None:
            mux = self.mux
            with mux.cond:
                if mux.broken is not None:
                    self.events.end_all(copy_error(error))
                    mux.cond.notify_all()

    # ------------------------------------------------------------------ heartbeats

    def start_heartbeats(self):
        """Starts the heartbeat thread (a daemon thread) when the daemon has a lease."""
        if self.lease <= 0:
            return
        self.heartbeat_thread = threading.Thread(
            target=_heartbeat_loop, args=(weakref.ref(self), self.stop),
            name="labhost heartbeat %s:%d" % (self.host, self.port), daemon=True)
        self.heartbeat_thread.start()

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
        self.send_unsubscribes()
        if self.beat_due():
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
            self.events.end_all(ConnectionLostError("the client closed this connection"))
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
