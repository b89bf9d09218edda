"""The asyncio client's multiplexer layer: many requests in flight on one link.

Each request takes a request id (1 to 2**32 - 1, wrapping; id 0 is the daemon's, for errors
of the whole connection) and a future in the table of waiting replies. The link's frames are
routed as they arrive, on the event loop: a reply to its future, an event frame to the
`on_event(subscription id, payload)` hook, the error of a oneway call (sent with no reply
awaited) to `on_oneway_error(error)`. When the link is lost, every waiting request fails
with the error it was lost with (break_link), and `on_break()` is called. Whether a broken
link is replaced is the session's decision (session.py): install() puts a new one in place.

Everything here runs on the event loop's thread, so nothing needs a lock.
"""

import asyncio
import time

from .. import codec, protocol
from ..errors import ConnectionLostError, LabhostError
from ..multiplexer import RecentIds
from ..transport import copy_error

__all__ = ["AsyncMultiplexer", "NotSent"]


class NotSent(Exception):
    """The link had broken (or was closing) before a byte of the request went out."""


class AsyncMultiplexer:
    """Requests and their replies on the current link (a transport.FrameProtocol)."""

    def __init__(self):
        self.link = None
        self.pending = {}           # request id -> future of (type, payload buffer)
        self.broken = ConnectionLostError("not connected yet")
        self.broken_at = time.monotonic()
        self.closed = False         # set by close(): never reconnect
        self.last_sent = 0.0        # monotonic time the last frame went out
        self.oneway = RecentIds()
        self.on_event = None
        self.on_oneway_error = None
        self.on_break = None
        self._next_id = 1

    def install(self, link):
        """Puts a new link (handshake done) in place of the broken one, and mends the break.
        Frames that came after the handshake are routed first."""
        old = self.link
        self.link = link
        self.broken = None
        self.last_sent = time.monotonic()
        link.on_lost = self._lost
        link.sink = self._on_frame
        if old is not None and old is not link:
            old.on_lost = None
            old.drop(abortive=True)
        for frame in link.take_kept():
            self._on_frame(*frame)

    def send(self, message_type, parts, size, expect_reply):
        """Takes a request id, registers a future for the reply (unless not `expect_reply`,
        a oneway request) and writes the frame (its first part starts with room for the
        header; `size`: its payload's). Returns (request id, future or None). Raises the
        break's error when the link is broken, NotSent when it broke unnoticed (then nothing
        went out)."""
        if self.closed:
            raise ConnectionLostError("the client closed this connection")
        if self.broken is not None:
            raise copy_error(self.broken)
        request_id = self._next_id
        self._next_id = protocol.next_request_id(request_id)
        protocol.pack_header(parts[0], message_type, request_id, size)
        if not self.link.write(parts):
            raise NotSent()
        self.last_sent = time.monotonic()
        if not expect_reply:
            self.oneway.add(request_id)
            return request_id, None
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        return request_id, future

    @property
    def closed_for_good(self):
        """True once the client closed this connection: it is never reconnected."""
        return self.closed

    def forget(self, request_id):
        """A request nobody waits for any more (timed out, cancelled): its reply is dropped."""
        self.pending.pop(request_id, None)

    def _on_frame(self, message_type, request_id, payload):
        if request_id == 0 and message_type == protocol.ERROR:
            # A connection-level error (busy, bad_frame, timeout) that the daemon sends just
            # before it closes the connection.
            try:
                error = protocol.error_from(codec.decode(payload, payload.start))
            except LabhostError as e:
                error = e
            self.break_link(error)
            return
        if message_type == protocol.EVENT:
            if self.on_event is not None:
                self.on_event(request_id, payload)
            return
        future = self.pending.pop(request_id, None)
        if future is not None:
            if not future.done():
                future.set_result((message_type, payload))
            return
        if message_type == protocol.ERROR and request_id in self.oneway \
                and self.on_oneway_error is not None:
            try:
                error = protocol.error_from(codec.decode(payload, payload.start))
            except LabhostError as e:
                error = e
            self.on_oneway_error(error)

    def _lost(self, link, error):
        if link is self.link:
            self.break_link(error, abortive=False)

    def break_link(self, error, abortive=True):
        """Fails every waiting request with `error` (or the earlier break's) and drops the
        link: `abortive` as a network failure would (the daemon keeps the session for a
        resume), else in an orderly way."""
        if self.broken is None:
            self.broken = error
            self.broken_at = time.monotonic()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(copy_error(self.broken))
        if self.link is not None:
            self.link.drop(abortive)
        if self.on_break is not None:
            self.on_break()
