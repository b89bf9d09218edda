"""The API layer: one connection, and one session, to one labhost daemon.

A Connection is thread-safe: several threads may call at once, and their requests are in
flight together on the one TCP socket, matched by request id. It is made of the layers of
docs/clients.md: the transport (transport.py, the socket, TCP or TLS), the multiplexer
(multiplexer.py, request ids and leader/follower reading: a lone caller reads its own reply,
no thread hop) and the session (session.py, hello, resuming, heartbeats); this module turns
calls, describe, ping and locks into requests and their replies into values and typed errors.

While open, a background (daemon) thread pings whenever nothing was sent for a third of the
daemon's lease, so an idle session and its locks stay alive. When the connection breaks, the
heartbeat thread, or else the next request, reconnects and presents the session token: within
the lease the daemon resumes the session with its locks; a daemon that restarted opens a fresh
session. It does not reconnect on its own after the daemon refused this client
(AuthFailedError, TlsRequiredError, UnsupportedVersionError): resume() does. A request whose
connection broke while it was in flight raises ConnectionLostError (it may have run). close()
says goodbye; so does the interpreter at exit, or the garbage collector for a connection
nobody references.

A daemon whose host.json has ``auth`` requires a shared secret, proven by a challenge-response
in which the secret never travels (session.py). The secret: the ``secret`` argument, else
$LABHOST_SECRET, else the first line of the file named by $LABHOST_SECRET_FILE
(secret_from_environment).

Beyond calls that wait for their result (protocol version 2): call_oneway() sends a call
and returns at once (the daemon answers only if it fails: to ``on_oneway_error``), and
subscribe() receives the values a service publishes on a topic (subscription.py).

A daemon whose host.json has ``tls`` serves TLS only. The client uses TLS when it knows a CA
file (``tls_ca``, else $LABHOST_TLS_CA) or is given an ``ssl_context``: the daemon's
certificate must be signed by that CA and name the host connected to; ``tls_cert`` and
``tls_key`` ($LABHOST_TLS_CERT, $LABHOST_TLS_KEY) are this client's, for daemons that verify
clients (tls_context).
"""

import time
import weakref

from . import protocol
from .address import parse_address
from .locks import LockStatus, lock_statuses, lock_wait_ms
from .multiplexer import DEFAULT as _DEFAULT, Multiplexer, expect
from .session import Session, default_client_name, end_session, secret_from_environment, security
from .subscription import Subscription
from .transport import TlsTransport, Transport, tls_context

__all__ = ["Connection", "SessionView", "default_client_name", "secret_from_environment",
           "tls_context"]


def _setting(layer, name, doc):
    """A Connection attribute kept by one of its layers (read and written there)."""
    def get(self):
        return getattr(getattr(self, layer), name)

    def set(self, value):
        setattr(getattr(self, layer), name, value)
    return property(get, set, doc=doc)


class SessionView:
    """What a connection shows of its session, for Connection and aio.AsyncConnection alike
    (both keep theirs in `_session`)."""

    __slots__ = ()

    host = _setting("_session", "host", "The daemon's host name or address.")
    port = _setting("_session", "port", "The daemon's port.")
    connect_timeout = _setting("_session", "connect_timeout", "Seconds to connect and say hello.")
    client_name = _setting("_session", "client_name", "How the daemon names this client.")
    reconnect = _setting("_session", "reconnect", "Resume the session after a broken connection.")
    on_oneway_error = _setting("_session", "on_oneway_error",
                               "Called with the error of a oneway call that failed.")

    @property
    def address(self):
        return self._session.address

    @property
    def session_token(self):
        return self._session.welcome["session_token"]

    @property
    def daemon_name(self):
        return self._session.welcome["daemon"]

    @property
    def server_version(self):
        return self._session.welcome.get("server_version", "")

    @property
    def lease(self):
        """The daemon's lease in seconds: a session silent this long ends (with its locks)."""
        return self._session.lease

    @property
    def resumed(self):
        """True when the last (re)connection resumed an earlier session."""
        return self._session.resumed

    @property
    def protocol_version(self):
        """The protocol version of the session: 2, or 1 with a daemon that speaks no more
        (then no events and no oneway calls)."""
        return self._session.version

    @property
    def oneway_failures(self):
        """Oneway calls the daemon reported as failed so far."""
        return self._session.oneway_failures

    @property
    def tls(self):
        """True when the connection uses TLS."""
        return self._session.ssl_context is not None


class Connection(SessionView):
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

    `on_oneway_error`: called with the error (a LabhostError) of a oneway call that failed in
    the daemon, on whichever thread reads the connection when it comes (a caller waiting for
    its reply or for an event, or the heartbeat thread), so it must not wait on this
    connection; default: a warning through logging.getLogger("labhost"). Such errors are
    counted in ``oneway_failures`` either way.
    """

    def __init__(self, host, port, *, timeout=None, connect_timeout=5.0, client_name=None,
                 heartbeats=True, reconnect=True, max_payload=protocol.DEFAULT_MAX_PAYLOAD,
                 secret=None, tls_ca=None, tls_cert=None, tls_key=None, ssl_context=None,
                 busy_poll_us=50, on_oneway_error=None):
        # First: a bad secret file or TLS file fails before connecting.
        secret, ssl_context = security(secret, tls_ca, tls_cert, tls_key, ssl_context)
        port = int(port)
        if isinstance(busy_poll_us, bool) or not isinstance(busy_poll_us, (int, float)) or busy_poll_us < 0:
            raise ValueError("busy_poll_us: expected a number of microseconds >= 0, got %r" % (busy_poll_us,))
        if ssl_context is None:
            self._io = Transport(max_payload, busy_poll_us / 1e6)
        else:
            self._io = TlsTransport(max_payload)
        self._mux = Multiplexer(self._io, timeout)
        self._session = Session(self._mux, host, port, connect_timeout=connect_timeout,
                                client_name=client_name or default_client_name(), secret=secret,
                                ssl_context=ssl_context, reconnect=reconnect,
                                on_oneway_error=on_oneway_error)
        # The hot path calls the multiplexer's own bound methods: no wrapper in between.
        self._request = self._mux.request
        self._request_value = self._mux.request_value
        self._session.open_first()
        self._finalizer = weakref.finalize(self, end_session, self._io, self._session.stop)
        if heartbeats:
            self._session.start_heartbeats()

    @classmethod
    def open(cls, address, **options):
        """Connects to the daemon of a ``lab://HOST:PORT[/SERVICE]`` address."""
        a = parse_address(address)
        return cls(a.host, a.port, **options)

    # ------------------------------------------------------------------ properties

    timeout = _setting("_mux", "timeout", "Seconds to wait for each reply (None: as long as it takes).")
    max_payload = _setting("_io", "max_payload", "Largest payload sent or accepted, in bytes.")

    @property
    def closed(self):
        return self._io.closed

    def __repr__(self):
        state = "closed" if self._io.closed else ("broken" if self._mux.broken else "open")
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
        parts = protocol.encode_call(bytearray(protocol.HEADER_SIZE), prefix, args, kwargs)
        return expect(self._request(protocol.CALL, parts, timeout), protocol.RESULT)

    def call_oneway(self, service, method, /, *args, **kwargs):
        """Sends service.method(*args, **kwargs) as a oneway call and returns None at once:
        the daemon sends no result. The oneway calls of this connection to one service run
        in the order sent, and before its later calls there. If one fails, the daemon sends
        its error all the same: it goes to ``on_oneway_error`` when this connection next
        reads (a later call, a subscriber's wait or a heartbeat). Raises only when the call
        cannot be sent (ConnectionLostError...). On a version-1 session the daemon runs the
        call as an ordinary one, and its result is dropped."""
        self.call_oneway_prefixed(protocol.call_prefix(service, method, oneway=True), args, kwargs)

    def call_oneway_prefixed(self, prefix, args, kwargs):
        """call_oneway() with the message start from protocol.call_prefix(..., oneway=True)."""
        self._mux.send_oneway(protocol.CALL, protocol.encode_call(
            bytearray(protocol.HEADER_SIZE), prefix, args, kwargs, oneway=True))

    def subscribe(self, service, topic, queue=16, max_rate=0):
        """Subscribes to the events a service publishes on `topic` (describe lists its
        topics); returns a Subscription. `queue`: how many events the daemon, and this client,
        keep for this subscriber while it cannot take them (1 to 1024; beyond, the oldest are
        dropped and counted); `max_rate`: at most this many events a second (0: no limit).
        Errors: NoSuchTopicError, NoSuchServiceError, ServiceUnavailableError, BusyError (too
        many subscriptions), BadMessageError (queue or max_rate out of range),
        UnsupportedVersionError (a daemon of protocol version 1)."""
        session = self._session
        protocol.require_events(session.version, topic)
        message = protocol.subscribe(service, topic, queue, max_rate)
        session.send_unsubscribes()
        mux = self._mux
        with mux.cond:
            session.events.begin_subscribe()  # events that come before the reply is taken are kept
        subscription = None
        try:
            report = protocol.parse_subscription(expect(
                self._request_value(protocol.SUBSCRIBE, message), protocol.RESULT))
            subscription = report["subscription"]
        finally:
            with mux.cond:
                state = session.events.end_subscribe(subscription, queue)
        return Subscription(self, state, report)

    def describe(self, service=""):
        """The daemon's description ({"daemon", "services"}), or one service's (with its
        methods: name, params, returns, doc) when `service` is given."""
        return expect(self._request_value(protocol.DESCRIBE, {"service": service}),
                      protocol.DESCRIPTION)

    def ping(self):
        """Round trip of one ping, in seconds."""
        start = time.perf_counter()
        expect(self._request_value(protocol.PING, None), protocol.PONG)
        return time.perf_counter() - start

    def lock(self, service, wait=0.0):
        """Locks `service` for this session, waiting up to `wait` seconds for a lock held by
        another session. Returns a LockStatus. Errors: LockedError, NotLockableError."""
        wait_ms = lock_wait_ms(wait)
        # The daemon answers by itself once the wait runs out: wait for that answer on top of
        # the reply timeout, never give up on a lock it may still grant.
        timeout = None if self.timeout is None else self.timeout + wait_ms / 1000.0
        report = expect(self._request_value(
            protocol.LOCK, {"service": service, "wait_ms": wait_ms}, timeout), protocol.RESULT)
        return LockStatus.from_report(report)

    def unlock(self, service):
        """Releases this session's lock. Errors: NotLockOwnerError."""
        expect(self._request_value(
            protocol.UNLOCK, {"service": service, "force": False, "admin_secret": ""}),
            protocol.RESULT)

    def force_unlock(self, service, admin_secret):
        """Releases another session's lock (administrators). Errors: NotAuthorisedError."""
        expect(self._request_value(
            protocol.UNLOCK, {"service": service, "force": True, "admin_secret": admin_secret}),
            protocol.RESULT)

    def lock_status(self, service=""):
        """LockStatus of one service, or a list of them for every service when `service` is
        empty."""
        reports = expect(self._request_value(protocol.LOCK_STATUS, {"service": service}),
                         protocol.RESULT)
        return lock_statuses(reports, service)

    def resume(self):
        """Drops the link the way a network failure would, reconnects and presents the
        session token. True when the daemon still had the session (with its locks)."""
        return self._session.drop_and_resume()

    def close(self):
        """Says goodbye and closes: the daemon ends the session and releases its locks.
        Requests in flight raise ConnectionLostError. Idempotent."""
        if self._session.close():
            self._finalizer()
            self._session.join_heartbeats()
