"""The asyncio client's session layer: one session with one daemon, over the multiplexer.

The same rules as the sync client's session (docs/clients.md; ../session.py), on an event
loop: it opens links (TLS first when used, then hello, and the secret's challenge when the
daemon requires one: protocol.Handshake, the same proofs), resumes the session on a new link
after a break by presenting its token, keeps an idle session alive with a heartbeat task (a
ping a third of the lease after the last frame sent), and replaces a broken link after any
break except a refusal that a new link would only repeat (REFUSALS), never after close().
A request first repairs a broken link (rule 3), looks whether the daemon closed an idle one
(rule 5), and goes out on a new link when the old one broke before it was written (rule 4).

Subscriptions belong to the session: events go to their queues (events.EventRouter) as the
link delivers them, and a subscriber waiting in next() that finds the link broken repairs it.
They survive a resume; when a new session had to be opened, or the client closes, they end
with ConnectionLostError.
"""

import asyncio
import logging
import select
import time
import weakref

from .. import codec, protocol
from ..errors import ConnectionLostError, LabhostError, LabhostTimeoutError
from ..multiplexer import expect
from ..session import (REFUSALS, RESUME, SESSION_GONE, SessionBase, restore_steps, resumable,
                       weakly)
from ..transport import IDLE_CHECK_AFTER, bound_silence, copy_error
from . import transport
from .multiplexer import AsyncMultiplexer, NotSent

__all__ = ["AsyncSession", "DEFAULT"]

log = logging.getLogger("labhost")

DEFAULT = object()  # a request's timeout when none is given: the session's own


class AsyncSession(SessionBase):
    """The session with the daemon at host:port. `secret`: bytes or None; `ssl_context`: an
    ssl.SSLContext for TLS, or None. open() connects."""

    def __init__(self, host, port, *, timeout, connect_timeout, client_name, secret, ssl_context,
                 reconnect, max_payload, on_oneway_error=None):
        self.timeout = timeout
        self.max_payload = max_payload
        self.mux = AsyncMultiplexer()
        self.heartbeat_task = None
        self._connect_lock = None  # an asyncio.Lock, made on the loop by open()
        super().__init__(host, port, connect_timeout, client_name, secret, ssl_context,
                         reconnect, on_oneway_error)
        self.mux.on_break = weakly(self._wake_subscribers)

    @property
    def where(self):
        return "%s:%d" % (self.host, self.port)

    # ------------------------------------------------------------------ opening

    async def open_first(self, heartbeats):
        """Opens the first link, with a fresh session; starts the heartbeats."""
        self._connect_lock = asyncio.Lock()
        link, self.welcome = await self.open("")
        self.mux.install(link)
        if heartbeats and self.lease > 0:
            self.heartbeat_task = asyncio.get_running_loop().create_task(
                _heartbeat_loop(weakref.ref(self)))

    async def open(self, token):
        """Connects and shakes hands (TLS when used, then hello, and with a secret challenge
        and authenticate), within connect_timeout. Returns (link, welcome)."""
        opened = []
        try:
            return await asyncio.wait_for(self._open(token, opened), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectionLostError("no welcome from %s within %g s"
                                      % (self.where, self.connect_timeout)) from None
        except BaseException:
            for link in opened:
                link.drop(abortive=False)
            raise

    async def _open(self, token, opened):
        link = await transport.connect(self.host, self.port, self.max_payload, self.ssl_context)
        opened.append(link)
        handshake = protocol.Handshake(self.client_name, token, self.secret, self.where)
        link.write([handshake.hello_frame()])
        while handshake.welcome is None:
            message_type, _, payload = await link.next_frame()
            answer = handshake.answer(message_type, codec.decode(payload, payload.start))
            if answer is not None:
                link.write([answer])
        sock = link.transport.get_extra_info("socket") if link.transport is not None else None
        if sock is not None:
            bound_silence(sock, handshake.welcome.get("lease_ms", 0))
        return link, handshake.welcome

    # ------------------------------------------------------------------ requests

    async def request(self, message_type, parts, timeout=DEFAULT, expect_reply=True):
        """Sends one request (its frame's parts, the first with room for the header) and, when
        `expect_reply`, waits for its reply: (type, payload buffer)."""
        size = protocol.request_size(parts, self.max_payload)
        mux = self.mux
        for attempt in (1, 2):
            await self._before_request()
            try:
                request_id, future = mux.send(message_type, parts, size, expect_reply)
                break
            except NotSent:
                # Not a byte of it went out: it surely did not run. Once more on a new link.
                mux.break_link(ConnectionLostError("the daemon closed the connection"))
                if attempt == 2 or not self.reconnect:
                    raise ConnectionLostError("the connection broke before the request was sent") from None
        link = mux.link
        if link.paused:
            await link.drain()
        if future is None:
            return None
        if timeout is DEFAULT:
            timeout = self.timeout
        try:
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise LabhostTimeoutError("no reply within %g s" % timeout) from None
        finally:
            mux.forget(request_id)

    async def request_value(self, message_type, payload, timeout=DEFAULT):
        """request() of a message given as a value, and its reply's value, of type RESULT
        (PONG for a ping, DESCRIPTION for describe)."""
        expected = {protocol.PING: protocol.PONG,
                    protocol.DESCRIBE: protocol.DESCRIPTION}.get(message_type, protocol.RESULT)
        parts = codec.encode_into(bytearray(protocol.HEADER_SIZE), payload)
        return expect(await self.request(message_type, parts, timeout), expected)

    async def _before_request(self):
        """Rules 3 and 5: a link the daemon closed while it was idle is found before a request
        is lost on it, and a broken link is replaced (unless the daemon refused this client)."""
        mux = self.mux
        if self.welcome is None:
            raise ConnectionLostError("not connected: await open() first")
        if mux.broken is None and not mux.pending \
                and time.monotonic() - mux.last_sent >= IDLE_CHECK_AFTER \
                and _readable(mux.link.fileno()):
            # Bytes or an end-of-stream wait: give the loop a whole turn to take them in,
            # so that a link the daemon closed is known to be broken now.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        if mux.broken is not None and self.reconnect and not mux.closed and resumable(mux.broken):
            await self.resume()

    # ------------------------------------------------------------------ resuming

    async def resume(self, explicit=False):
        """Replaces a broken link by a new one that presents the session token. Unless
        `explicit`, not after the daemon refused this client. True when the daemon still had
        the session; when it had not, every subscription ends."""
        mux = self.mux
        async with self._connect_lock:
            if mux.closed:
                raise ConnectionLostError("the client closed this connection")
            if mux.broken is None:
                return self.resumed  # another task did it
            if not explicit and not resumable(mux.broken):
                raise copy_error(mux.broken)
            try:
                link, welcome = await self.open(self.welcome["session_token"])
            except REFUSALS as e:
                # A new connection would be refused again: no reconnecting by itself after
                # this one (resume() still tries).
                if mux.broken is not None:
                    mux.broken = e
                raise
            if mux.closed:
                link.drop(abortive=False)
                raise ConnectionLostError("the client closed this connection")
            self.welcome = welcome
            mux.install(link)
            if not welcome.get("resumed"):
                self._end_subscriptions(ConnectionLostError(SESSION_GONE))
                log.warning("labhost: %s: the session could not be resumed (the daemon restarted "
                            "or the lease ran out); a new one was opened, without earlier locks",
                            self.address)
            return bool(welcome.get("resumed"))

    async def drop_and_resume(self):
        """Drops the link as a network failure would, then resume(explicit=True)."""
        mux = self.mux
        if mux.closed:
            raise ConnectionLostError("the client closed this connection")
        if mux.broken is None:
            mux.break_link(ConnectionLostError("reconnecting"), abortive=True)
        return await self.resume(explicit=True)

    # ------------------------------------------------------------------ events and oneway calls

    def route_event(self, subscription, payload):
        """The multiplexer's hook for an event frame: to its subscription's queue."""
        state = self.route(subscription, payload)
        if state is not None:
            _wake(state)

    def _wake_subscribers(self):
        """After a break: subscribers waiting for events look at the link (and repair it)."""
        for state in list(self.events.states.values()):
            _wake(state)

    def _end_subscriptions(self, error):
        for state in self.events.end_all(error):
            _wake(state)

    async def send_unsubscribes(self):
        """Tells the daemon about subscriptions whose owner was collected without closing
        them; their replies are not awaited."""
        for subscription in self.events.take_unsubscribes():
            try:
                await self.request(protocol.UNSUBSCRIBE, codec.encode_into(
                    bytearray(protocol.HEADER_SIZE), protocol.unsubscribe(subscription)),
                    expect_reply=False)
            except LabhostError:
                return  # the link is down: the session, and with it the subscription, may be too

    async def restore_for_events(self, deadline):
        """For a subscriber that found the link broken: as the sync Session's, reconnects by
        restore_steps (the same policy), and ends every subscription with the error when the
        link cannot be restored."""
        steps = restore_steps(self, deadline)
        try:
            step = next(steps)
            while True:
                if step is RESUME:
                    try:
                        await self.resume()
                        step = steps.send(None)
                    except LabhostError as e:
                        step = steps.send(e)
                else:
                    await asyncio.sleep(step)
                    step = next(steps)
        except StopIteration as done:
            error = done.value
        if error is not None and self.mux.broken is not None:
            self._end_subscriptions(copy_error(error))

    # ------------------------------------------------------------------ heartbeats

    async def beat(self):
        """One heartbeat: a ping when nothing was sent for a period; a reconnect when broken."""
        mux = self.mux
        if mux.closed:
            return
        if mux.broken is not None:
            if self.reconnect and resumable(mux.broken):
                await self.resume()
            return
        await self.send_unsubscribes()
        if self.beat_due():
            await self.request_value(protocol.PING, None, None)

    # ------------------------------------------------------------------ closing

    async def close(self):
        """Says goodbye (the daemon ends the session and releases its locks), fails the
        requests in flight and ends the subscriptions. False when closed already."""
        mux = self.mux
        if mux.closed:
            return False
        mux.closed = True
        task, self.heartbeat_task = self.heartbeat_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        link = mux.link
        if mux.broken is None and link is not None:
            link.write([protocol.frame_bytes(protocol.GOODBYE, 0, None)])
        mux.break_link(ConnectionLostError("the client closed this connection"), abortive=False)
        self._end_subscriptions(ConnectionLostError("the client closed this connection"))
        if link is not None:
            try:
                await asyncio.wait_for(asyncio.shield(link.closed), 5.0)
            except asyncio.TimeoutError:
                link.drop(abortive=True)
        return True

    def abandon(self):
        """The finalizer's end of a connection nobody closed: drops the link (the daemon
        keeps the session for a lease)."""
        self.mux.closed = True
        link = self.mux.link
        if link is not None and link.transport is not None:
            try:
                link.transport.abort()
            except RuntimeError:  # its event loop is closed: so is the socket
                pass


def _wake(state):
    """Wakes the subscriber waiting on `state`, if any."""
    waiter = state.waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _readable(fd):
    """True when the socket has bytes, or an end-of-stream, waiting (without blocking)."""
    if fd < 0:
        return False
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


async def _heartbeat_loop(ref):
    """The heartbeat task (rule 6). Holds the session only while beating, so an unreferenced
    connection is still collected."""
    while True:
        session = ref()
        if session is None or session.mux.closed:
            return
        wait = session.next_beat_in()
        del session
        await asyncio.sleep(wait)
        session = ref()
        if session is None or session.mux.closed:
            return
        try:
            await session.beat()
        except (LabhostError, OSError) as e:  # the next beat retries
            log.debug("labhost heartbeat: %s", e)
        finally:
            del session
