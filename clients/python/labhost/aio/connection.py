"""The asyncio client's API layer: AsyncConnection, one connection and one session to one
labhost daemon, for code that runs on an asyncio event loop.

It is labhost.Connection with coroutines: the same options, errors, values and rules
(docs/clients.md), made of the same layers (transport.py, multiplexer.py, session.py here,
over the shared codec, protocol, events and errors). Any number of calls may be in flight at
once on the one connection, from as many tasks, matched by request id:

    conn = await labhost.aio.connect_daemon("lab://127.0.0.1:7701")
    readings = await asyncio.gather(*(conn.call("powermeter", "read") for _ in range(100)))

An AsyncConnection belongs to the event loop it was opened on; it is not thread-safe.
"""

import time
import weakref

from .. import protocol
from ..address import parse_address
from ..connection import SessionView, _setting
from ..locks import LockStatus, lock_statuses, lock_wait_ms
from ..multiplexer import expect
from ..session import default_client_name, security
from .session import DEFAULT, AsyncSession
from .subscription import AsyncSubscription

__all__ = ["AsyncConnection"]


class AsyncConnection(SessionView):
    """A session with one daemon, for asyncio: calls, oneway calls, subscriptions, describe,
    ping, locks.

    ``conn = AsyncConnection("127.0.0.1", 7701); await conn.open()``, or
    ``await labhost.aio.connect_daemon("lab://127.0.0.1:7701")``, or
    ``async with AsyncConnection(...) as conn:``. The options are labhost.Connection's:
    `timeout` (seconds to wait for each reply; None: as long as it takes), `connect_timeout`,
    `client_name`, `heartbeats` (a ping a third of the lease after the last frame sent, from
    a task), `reconnect` (resume the session after a broken link), `max_payload`, `secret`,
    `tls_ca`, `tls_cert`, `tls_key`, `ssl_context` and `on_oneway_error` (called on the event
    loop with the error of a oneway call that failed; default: a warning through
    logging.getLogger("labhost")). There is no busy polling: the event loop waits for the
    socket.
    """

    def __init__(self, host, port, *, timeout=None, connect_timeout=5.0, client_name=None,
                 heartbeats=True, reconnect=True, max_payload=protocol.DEFAULT_MAX_PAYLOAD,
                 secret=None, tls_ca=None, tls_cert=None, tls_key=None, ssl_context=None,
                 on_oneway_error=None):
        # First: a bad secret file or TLS file fails before connecting.
        secret, ssl_context = security(secret, tls_ca, tls_cert, tls_key, ssl_context)
        self._session = AsyncSession(
            host, int(port), timeout=timeout, connect_timeout=connect_timeout,
            client_name=client_name or default_client_name(), secret=secret,
            ssl_context=ssl_context, reconnect=reconnect, max_payload=max_payload,
            on_oneway_error=on_oneway_error)
        self._heartbeats = heartbeats
        self._finalizer = None

    async def open(self):
        """Connects and opens the session (hello, and the secret's challenge). Returns self."""
        if self._finalizer is None:
            await self._session.open_first(self._heartbeats)
            self._finalizer = weakref.finalize(self, self._session.abandon)
        return self

    @classmethod
    async def connect(cls, address, **options):
        """An open AsyncConnection to the daemon of a ``lab://HOST:PORT[/SERVICE]`` address."""
        a = parse_address(address)
        return await cls(a.host, a.port, **options).open()

    async def __aenter__(self):
        return await self.open()

    async def __aexit__(self, *exc):
        await self.close()

    # ------------------------------------------------------------------ properties

    timeout = _setting("_session", "timeout", "Seconds to wait for each reply (None: as long as it takes).")
    max_payload = _setting("_session", "max_payload", "Largest payload sent or accepted, in bytes.")

    @property
    def closed(self):
        return self._session.mux.closed

    def __repr__(self):
        mux = self._session.mux
        state = "closed" if mux.closed else ("broken" if mux.broken else "open")
        name = self._session.welcome["daemon"] if self._session.welcome else "?"
        return "<labhost.aio.AsyncConnection %s daemon %r %s>" % (self.address, name, state)

    # ------------------------------------------------------------------ requests

    async def call(self, service, method, /, *args, **kwargs):
        """Calls service.method(*args, **kwargs) and returns its result."""
        return await self.call_prefixed(protocol.call_prefix(service, method), args, kwargs)

    async def call_prefixed(self, prefix, args, kwargs, timeout=DEFAULT):
        """call() with the message start from protocol.call_prefix (proxies keep it)."""
        parts = protocol.encode_call(bytearray(protocol.HEADER_SIZE), prefix, args, kwargs)
        return expect(await self._session.request(protocol.CALL, parts, timeout), protocol.RESULT)

    async def call_oneway(self, service, method, /, *args, **kwargs):
        """Sends service.method(*args, **kwargs) as a oneway call and returns None once it
        is written, without waiting for the daemon: see Connection.call_oneway. A failure
        goes to ``on_oneway_error`` as soon as the daemon reports it."""
        await self.call_oneway_prefixed(protocol.call_prefix(service, method, oneway=True),
                                        args, kwargs)

    async def call_oneway_prefixed(self, prefix, args, kwargs):
        # Joined into one buffer: the caller may change its arrays as soon as this returns,
        # while the transport may still hold what it could not write yet.
        parts = protocol.encode_call(bytearray(protocol.HEADER_SIZE), prefix, args, kwargs, oneway=True)
        if len(parts) > 1:
            parts = [bytearray(b"".join(parts))]
        await self._session.request(protocol.CALL, parts, expect_reply=False)

    async def subscribe(self, service, topic, queue=16, max_rate=0):
        """Subscribes to the events a service publishes on `topic`; returns an
        AsyncSubscription. Options and errors as Connection.subscribe."""
        session = self._session
        protocol.require_events(session.version, topic)
        message = protocol.subscribe(service, topic, queue, max_rate)
        await session.send_unsubscribes()
        session.events.begin_subscribe()  # events that come before the reply is taken are kept
        subscription = None
        try:
            report = protocol.parse_subscription(
                await session.request_value(protocol.SUBSCRIBE, message))
            subscription = report["subscription"]
        finally:
            state = session.events.end_subscribe(subscription, queue)
        return AsyncSubscription(self, state, report)

    async def describe(self, service=""):
        """The daemon's description, or one service's: see Connection.describe."""
        return await self._session.request_value(protocol.DESCRIBE, {"service": service})

    async def ping(self):
        """Round trip of one ping, in seconds."""
        start = time.perf_counter()
        await self._session.request_value(protocol.PING, None)
        return time.perf_counter() - start

    async def lock(self, service, wait=0.0):
        """Locks `service` for this session, waiting up to `wait` seconds for a lock held by
        another session. Returns a LockStatus. Errors: LockedError, NotLockableError."""
        wait_ms = lock_wait_ms(wait)
        # Rule 2: the daemon answers by itself once the wait runs out: wait for that answer
        # on top of the reply timeout, never give up on a lock it may still grant.
        timeout = self.timeout
        timeout = None if timeout is None else timeout + wait_ms / 1000.0
        report = await self._session.request_value(
            protocol.LOCK, {"service": service, "wait_ms": wait_ms}, timeout)
        return LockStatus.from_report(report)

    async def unlock(self, service):
        """Releases this session's lock. Errors: NotLockOwnerError."""
        await self._session.request_value(
            protocol.UNLOCK, {"service": service, "force": False, "admin_secret": ""})

    async def force_unlock(self, service, admin_secret):
        """Releases another session's lock (administrators). Errors: NotAuthorisedError."""
        await self._session.request_value(
            protocol.UNLOCK, {"service": service, "force": True, "admin_secret": admin_secret})

    async def lock_status(self, service=""):
        """LockStatus of one service, or a list of them for every service."""
        reports = await self._session.request_value(protocol.LOCK_STATUS, {"service": service})
        return lock_statuses(reports, service)

    async def resume(self):
        """Drops the link the way a network failure would, reconnects and presents the
        session token. True when the daemon still had the session (with its locks and
        subscriptions)."""
        return await self._session.drop_and_resume()

    async def close(self):
        """Says goodbye and closes: the daemon ends the session and releases its locks.
        Requests in flight raise ConnectionLostError, subscriptions end. Idempotent."""
        if self._finalizer is not None:
            self._finalizer.detach()
        await self._session.close()
