"""Subscriptions of the sync client: the events a service publishes on a topic (protocol
version 2), made by Connection.subscribe, ServiceProxy.subscribe and ServiceProxy.stream.

    with camera.subscribe("frames", max_rate=30) as frames:
        for event in frames:               # Event(subscription, seq, dropped, time, value)
            show(event.value)              # a (2048, 2048) uint16 numpy array

    for frame in camera.stream("frames", max_rate=30):   # the values themselves
        show(frame)

Nobody reads for a subscription in the background: whoever waits reads (the leader/follower
reading of multiplexer.py). A thread in next() reads the connection's frames until its event
comes, handing replies to the threads waiting for them and events of other subscriptions to
their queues; a thread waiting for a reply likewise queues the events it meets. Events that
nobody reads wait in the daemon's queue for this subscriber (`queue` events, the oldest
dropped beyond), then in this client's queue of the same length (likewise).
"""

import time
import weakref

from . import protocol
from .errors import ConnectionLostError, NoSuchSubscriptionError
from .multiplexer import expect
from .transport import copy_error

__all__ = ["Subscription", "Stream", "SubscriptionBase"]


class SubscriptionBase:
    """What the sync and asyncio subscriptions share: the subscription's report (id, service,
    topic, type, queue, max_rate), its state in the session's EventRouter, and a finalizer that
    hands the id to the router when the subscription is collected without being closed."""

    _kind = "Subscription"

    def __init__(self, connection, state, report):
        self._connection = connection  # the subscription keeps its connection open
        self._session = connection._session
        self._state = state
        self.id = state.id
        self.service = report.get("service", "")
        self.topic = report.get("topic", "")
        self.type = report.get("type", "")
        self.queue = state.capacity
        self.max_rate = report.get("max_rate", 0.0)
        self._finalizer = weakref.finalize(self, self._session.events.abandoned.append, state.id)

    @property
    def dropped(self):
        """Events this subscriber lost so far (by the daemon and by this client's queue)."""
        return self._state.dropped

    @property
    def closed(self):
        """True once the subscription ended: closed, or its session lost."""
        return self._state.ended is not None

    def __repr__(self):
        return "<labhost.%s %d: %s/%s (%s)%s>" % (
            self._kind, self.id, self.service, self.topic, self.type, " ended" if self.closed else "")

    def _stop_events(self):
        """The local half of close(): ends the subscription (its iteration stops) and takes it
        out of the router. True when the daemon is to be told; False when the subscription had
        ended already (its session or connection is gone). REQUIRES: the router's guard (the
        sync client's multiplexer lock, the asyncio client's event loop)."""
        state = self._state
        self._finalizer.detach()
        if state.ended is not None:
            state.end(state.ended, closed=True)
            return False
        state.end(ConnectionLostError("this subscription was closed"), closed=True)
        self._session.events.remove(self.id)
        return True


class Subscription(SubscriptionBase):
    """A subscription to a topic of a service: its events, in order.

    ``for event in subscription`` waits for each event (an Event: value, seq, dropped, time,
    subscription) and ends when the subscription is closed; ``next(timeout)`` waits at most
    `timeout` seconds (None when none came). When the session is lost (the daemon restarted,
    or the client cannot reconnect within the lease) or the connection is closed, both raise
    ConnectionLostError once the events received before are taken. After a resume of the
    session the events go on. ``dropped``: events this subscriber lost, dropped by the daemon
    (as events report) and by this client's queue (next() not called fast enough).

    close() (or unsubscribe(), or leaving a ``with`` block) stops the events. A subscription
    nobody references any more is dropped too: its events are discarded at once, and the
    daemon is told with the next heartbeat or subscribe. Safe to use from several threads, but
    each event goes to one of them.
    """

    def next(self, timeout=None):
        """The next Event, waiting up to `timeout` seconds (None: as long as it takes); None
        when none came in time. Raises ConnectionLostError once the subscription ended (the
        session lost, the connection or the subscription closed) and its queue is empty."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        session = self._session
        mux = session.mux
        state = self._state

        def ready():
            return state.events or state.ended is not None or mux.broken is not None

        while True:
            with mux.cond:
                event = state.take()
                if event is not None:
                    return event
                if state.ended is not None:
                    raise copy_error(state.ended)
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                if mux.broken is None:
                    # The deadline bounds only the wait for a frame to begin: one that began
                    # is read whole, so a short timeout never cuts a large event in two.
                    mux.wait_locked(ready, deadline, False, deadline_to_begin=True)
                    continue
            session.restore_for_events(deadline)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self.next()
        except ConnectionLostError:
            if self._state.closed:
                raise StopIteration from None
            raise

    def close(self):
        """Unsubscribes: no more events, and iteration ends. Idempotent. A subscription whose
        session or connection is gone is ended already: nothing to tell the daemon."""
        mux = self._session.mux
        with mux.cond:
            if not self._stop_events():
                return
            mux.cond.notify_all()
        try:
            expect(self._connection._request_value(protocol.UNSUBSCRIBE, protocol.unsubscribe(self.id)),
                   protocol.RESULT)
        except (ConnectionLostError, NoSuchSubscriptionError):
            pass  # the session, and with it the subscription, is gone

    unsubscribe = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Stream:
    """The values of one subscription, for ``for frame in camera.stream("frames")``: iterating
    gives each event's value. ``subscription`` is the Subscription (seq, dropped, time);
    close() (or leaving a ``with`` block, or dropping the stream) unsubscribes."""

    __slots__ = ("subscription", "__weakref__")

    def __init__(self, subscription):
        self.subscription = subscription

    @property
    def dropped(self):
        return self.subscription.dropped

    def __iter__(self):
        return self

    def __next__(self):
        return self.subscription.__next__().value

    def close(self):
        self.subscription.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<labhost.Stream of %r>" % (self.subscription,)
