"""Subscriptions of the asyncio client: labhost.Subscription and labhost.Stream with
coroutines.

    async with await camera.subscribe("frames", max_rate=30) as frames:
        async for event in frames:             # Event(subscription, seq, dropped, time, value)
            show(event.value)

    async for frame in camera.stream("frames", max_rate=30):   # the values themselves
        show(frame)

The link delivers events as they come, on the event loop, to each subscription's bounded
queue (events.py): nobody has to be waiting for them.
"""

import asyncio
import time

from .. import protocol
from ..errors import ConnectionLostError, NoSuchSubscriptionError
from ..subscription import SubscriptionBase
from ..transport import copy_error

__all__ = ["AsyncSubscription", "AsyncStream"]


class AsyncSubscription(SubscriptionBase):
    """A subscription to a topic of a service: its events, in order (see
    labhost.Subscription). ``async for event in subscription`` ends when it is closed;
    ``await next(timeout)`` gives None when no event came within `timeout` seconds; both
    raise ConnectionLostError once the session is lost or the connection closed, after the
    events received before. ``dropped`` counts the events this subscriber lost.
    ``await close()`` (or ``async with``) unsubscribes."""

    _kind = "aio.AsyncSubscription"

    async def next(self, timeout=None):
        """The next Event, waiting up to `timeout` seconds (None: as long as it takes); None
        when none came in time. Raises ConnectionLostError once the subscription ended and
        its queue is empty."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        session = self._session
        mux = session.mux
        state = self._state
        loop = asyncio.get_running_loop()
        while True:
            event = state.take()
            if event is not None:
                return event
            if state.ended is not None:
                raise copy_error(state.ended)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if mux.broken is not None and not mux.closed:
                await session.restore_for_events(deadline)
                continue
            waiter = state.waiter
            if waiter is None or waiter.done():  # shared by every task waiting here
                waiter = state.waiter = loop.create_future()
            await asyncio.wait([waiter], timeout=left)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.next()
        except ConnectionLostError:
            if self._state.closed:
                raise StopAsyncIteration from None
            raise

    async def close(self):
        """Unsubscribes: no more events, and iteration ends. Idempotent."""
        if not self._stop_events():
            return
        waiter = self._state.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        try:
            await self._session.request_value(protocol.UNSUBSCRIBE, protocol.unsubscribe(self.id))
        except (ConnectionLostError, NoSuchSubscriptionError):
            pass  # the session, and with it the subscription, is gone

    unsubscribe = close

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class AsyncStream:
    """The values published on a topic, for ``async for frame in camera.stream("frames")``.
    It subscribes on first use (the first ``__anext__``, or ``async with``); ``subscription``
    is then the AsyncSubscription. ``await close()`` (or leaving ``async with``)
    unsubscribes; a stream dropped without closing is unsubscribed soon after."""

    def __init__(self, connection, service, topic, queue, max_rate):
        self._connection = connection
        self._arguments = (service, topic, queue, max_rate)
        self.subscription = None

    async def start(self):
        """Subscribes, unless done already. Returns self."""
        if self.subscription is None:
            self.subscription = await self._connection.subscribe(*self._arguments)
        return self

    @property
    def dropped(self):
        return self.subscription.dropped if self.subscription is not None else 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.subscription is None:
            await self.start()
        return (await self.subscription.__anext__()).value

    async def close(self):
        if self.subscription is not None:
            await self.subscription.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        service, topic = self._arguments[:2]
        return "<labhost.aio.AsyncStream %s/%s%s>" % (
            service, topic, "" if self.subscription is None else " (%r)" % self.subscription)
