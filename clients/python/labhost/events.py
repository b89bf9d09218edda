"""Events of subscriptions (protocol version 2), without I/O and without locks: the Event a
subscriber gets, each subscription's bounded queue, and the routing of event frames to their
subscriptions by id. The sync client (subscription.py, under its multiplexer's lock) and the
asyncio client (aio/, on its event loop) both keep their subscriptions here.

What the client keeps is bounded. Each subscription queues at most `queue` events (the
number it asked the daemon to keep for it): when one more comes before the subscriber took
the oldest, the oldest goes, and is counted in the subscription's ``dropped``, as the daemon
counts the events it dropped for this subscriber. Events that come before their subscribe
reply was taken (the daemon may publish at once) are kept, at most UNCLAIMED_EVENTS of them
and UNCLAIMED_BYTES in all, and handed to the subscription when it is registered; those that
did not fit are counted as dropped there.
"""

import collections

__all__ = ["Event", "SubscriptionState", "EventRouter", "UNCLAIMED_EVENTS", "UNCLAIMED_BYTES"]

UNCLAIMED_EVENTS = 256
UNCLAIMED_BYTES = 64 << 20


class Event(collections.namedtuple("Event", "subscription seq dropped time value")):
    """One value a service published on a topic, as a subscription receives it.

    ``value``: the published value (a camera frame: a numpy array of its shape);
    ``seq``: its number on its topic, counted by the service from 1 (a gap means events this
    subscriber did not get); ``dropped``: events the daemon dropped for this subscriber since
    the previous one it delivered; ``time``: when the driver published it, Unix time in
    seconds; ``subscription``: the subscription's id.
    """

    __slots__ = ()


class SubscriptionState:
    """What the client holds for one subscription: its queue of events, what it lost, and
    whether it ended (`ended`: the error that ended it; `closed`: closed by its owner)."""

    __slots__ = ("id", "capacity", "events", "dropped", "ended", "closed", "waiter")

    def __init__(self, subscription, capacity):
        self.id = subscription
        self.capacity = max(1, capacity)
        self.events = collections.deque()
        self.dropped = 0      # by the daemon (as events reported) and by this queue
        self.ended = None
        self.closed = False
        self.waiter = None    # the asyncio client's: a future a waiting next() sleeps on

    def put(self, event):
        self.dropped += max(0, event.dropped)
        self.events.append(event)
        if len(self.events) > self.capacity:  # the subscriber is not keeping up: the oldest goes
            self.events.popleft()
            self.dropped += 1

    def take(self):
        """The oldest queued event, or None."""
        return self.events.popleft() if self.events else None

    def end(self, error, closed=False):
        """Ends the subscription with `error` (the first end stays); `closed`: by its owner,
        whose queued events are of no use any more."""
        if self.ended is None:
            self.ended = error
        if closed:
            self.closed = True
            self.events.clear()


class EventRouter:
    """The subscriptions of one session, by id, and the events that came before theirs.
    Not thread-safe: its owner guards it (the sync client's multiplexer lock, the asyncio
    client's event loop), except `abandoned`, to which finalizers append lock-free."""

    def __init__(self):
        self.states = {}                 # subscription id -> SubscriptionState
        self.subscribing = 0             # subscribe requests whose reply was not taken yet
        self._early = {}                 # id -> [(event, error, size)], while subscribing
        self._early_lost = collections.Counter()
        self._early_count = 0
        self._early_bytes = 0
        # Ids of subscriptions whose owner was collected without closing them: a finalizer
        # may run on any thread at any moment, so it only appends here (atomic), and the
        # owner drains it. Their events are then dropped, and to_unsubscribe says which the
        # daemon should be told about.
        self.abandoned = collections.deque()
        self.to_unsubscribe = []

    def route(self, subscription, event, error, size):
        """An event frame for `subscription` (decoded `event`, or the `error` that decoding
        it raised; `size`: its payload bytes). Returns the state it went to, or None."""
        self.drain_abandoned()
        state = self.states.get(subscription)
        if state is None:
            if self.subscribing:
                self._keep_early(subscription, event, error, size)
            return None  # else a late event of a subscription that ended: dropped
        if error is not None:
            state.end(error)
        else:
            state.put(event)
        return state

    def _keep_early(self, subscription, event, error, size):
        if self._early_count >= UNCLAIMED_EVENTS or self._early_bytes + size > UNCLAIMED_BYTES:
            self._early_lost[subscription] += 1
            return
        self._early.setdefault(subscription, []).append((event, error, size))
        self._early_count += 1
        self._early_bytes += size

    def begin_subscribe(self):
        """A subscribe request goes out: events of ids not known yet are kept from now on."""
        self.subscribing += 1

    def end_subscribe(self, subscription=None, capacity=16):
        """The subscribe reply was taken: registers `subscription` (None: the request failed)
        with the events that came before it. Returns its state, or None."""
        self.subscribing -= 1
        state = None
        if subscription is not None:
            state = SubscriptionState(subscription, capacity)
            for event, error, size in self._early.pop(subscription, ()):
                self._early_count -= 1
                self._early_bytes -= size
                if error is not None:
                    state.end(error)
                else:
                    state.put(event)
            state.dropped += self._early_lost.pop(subscription, 0)
            self.states[subscription] = state
        if not self.subscribing:  # what is left belongs to no subscription of this session
            self._early.clear()
            self._early_lost.clear()
            self._early_count = self._early_bytes = 0
        return state

    def remove(self, subscription):
        self.states.pop(subscription, None)

    def end_all(self, error):
        """Ends every subscription with `error` (the session is gone); returns their states."""
        ended = list(self.states.values())
        self.states.clear()
        self._early.clear()
        self._early_lost.clear()
        self._early_count = self._early_bytes = 0
        for state in ended:
            state.end(error)
        return ended

    def drain_abandoned(self):
        """Forgets the subscriptions whose owner was collected; they are to be unsubscribed."""
        while self.abandoned:
            subscription = self.abandoned.popleft()
            if self.states.pop(subscription, None) is not None:
                self.to_unsubscribe.append(subscription)

    def take_unsubscribes(self):
        """The ids to unsubscribe (drain_abandoned), once each."""
        self.drain_abandoned()
        ids, self.to_unsubscribe = self.to_unsubscribe, []
        return ids
