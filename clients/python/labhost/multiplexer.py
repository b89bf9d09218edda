"""The multiplexer layer: several requests in flight on one transport.

Each request takes a request id (1 to 2**32 - 1, wrapping; id 0 is the daemon's, for errors of
the whole connection) and a slot in the table of waiting replies. Reading follows the
leader/follower pattern: a thread waiting for its reply either becomes the reader (reads
frames and hands each to its waiter) or sleeps until the reader hands it its reply. A lone
caller thus reads its own reply: no thread hop. When the link breaks, every waiting request
fails with the error that broke it (break_link). Whether a broken link is replaced by a new
one is the session's decision (session.py), asked through the `repair` hook before a request.
Frames that answer no request (events, the errors of oneway calls) go to hooks the session
sets. Anyone may wait for something else than a reply in the same way (wait_locked): a
subscriber waiting for its next event reads, or sleeps while another thread reads.

Thread-safety: any thread may send requests at once. `cond` guards the table, the reader's
flag, the break and the next id; frames are written whole under the transport's write lock;
the reader reads with neither held.
"""

import collections
import threading
import time

from . import codec, protocol
from .errors import BadMessageError, ConnectionLostError, LabhostError, LabhostTimeoutError
from .transport import MidFrameTimeout, SendFailed, copy_error, send_parts

__all__ = ["Multiplexer", "RecentIds", "DEFAULT", "expect"]

DEFAULT = object()  # a request's timeout when none is given: the multiplexer's own


def expect(reply, expected):
    """The value of a reply (type, payload buffer) of the type `expected`; an error reply
    raises its typed error, another type BadMessageError."""
    message_type, payload = reply
    value = codec.decode(payload, payload.start)
    if message_type == protocol.ERROR:
        raise protocol.error_from(value)
    if message_type != expected:
        raise BadMessageError("expected %s, got %s" % (
            protocol.MESSAGE_NAMES[expected], protocol.MESSAGE_NAMES.get(message_type, message_type)))
    return value


class _Pending:
    __slots__ = ("done", "type", "payload", "error")

    def __init__(self):
        self.done = False
        self.type = None
        self.payload = None
        self.error = None


class RecentIds:
    """The latest `size` request ids of one kind (oneway calls), to recognise the error the
    daemon sends for one of them."""

    __slots__ = ("_order", "_ids")

    def __init__(self, size=4096):
        self._order = collections.deque(maxlen=size)
        self._ids = set()

    def add(self, request_id):
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(request_id)
        self._ids.add(request_id)

    def __contains__(self, request_id):
        return request_id in self._ids


class Multiplexer:
    """Requests and their replies on one Transport `io`. `timeout`: seconds to wait for each
    reply when a request gives none (None: as long as it takes).

    Frames that answer no waiting request go to hooks, called by the reading thread with no
    lock held: event frames to `on_event(subscription id, payload buffer)`, the error of a
    oneway call (sent with send_oneway, no reply awaited) to `on_oneway_error(error)`."""

    def __init__(self, io, timeout=None):
        self.io = io
        self.timeout = timeout
        self.cond = threading.Condition(threading.Lock())
        self.pending = {}           # request id -> _Pending
        self.reader_active = False
        self.broken = None          # the error that made the current link unusable
        self.broken_at = 0.0        # monotonic time of the break
        self._next_id = 1
        self.oneway = RecentIds()   # the latest oneway requests' ids
        # Called (unlocked) before a request on a broken link, or on one the daemon closed
        # while it was idle; it may replace the link. None: a broken link stays broken, and a
        # request whose link broke before any of it went out is not sent again.
        self.repair = None
        self.on_event = None
        self.on_oneway_error = None

    def request_value(self, message_type, payload, timeout=DEFAULT, busy_poll=True):
        """request() of a message given as a value."""
        parts = codec.encode_into(bytearray(protocol.HEADER_SIZE), payload)
        return self.request(message_type, parts, timeout, busy_poll)

    def request(self, message_type, parts, timeout=DEFAULT, busy_poll=True):
        """Sends one request and waits for its reply: (type, payload buffer). `parts`: the
        frame's buffers, the first starting with room for the header. As the reader, polls
        before sleeping when `busy_poll` (transport._BusyPoll)."""
        pending = _Pending()
        request_id = self.send(message_type, parts, pending)
        if timeout is DEFAULT:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            try:
                if not self.wait_locked(lambda: pending.done, deadline, busy_poll):
                    raise LabhostTimeoutError("no reply within %g s" % timeout)
            except MidFrameTimeout:
                # The link was dropped (the others in flight see connection_lost); this
                # request simply timed out.
                self.pending.pop(request_id, None)
                raise LabhostTimeoutError("no reply within %g s (the link was dropped inside a "
                                          "frame)" % timeout) from None
            except BaseException:  # timeout, or KeyboardInterrupt: its reply will be dropped
                self.pending.pop(request_id, None)
                raise
        if pending.error is not None:
            raise pending.error
        return pending.type, pending.payload

    def send_oneway(self, message_type, parts):
        """Sends a request whose reply is not awaited (a oneway call): only its error may
        come, to on_oneway_error. Rules 4 and 5 as for request()."""
        self.send(message_type, parts, None)

    def send(self, message_type, parts, pending):
        """Takes a request id, registers `pending` under it (None: a oneway request) and
        writes the frame. Returns the request id. Repairs a broken or closed idle link first;
        a frame of which not a byte went out, because the link had broken, is sent once more
        on a new link (docs/clients.md, rules 4 and 5)."""
        io = self.io
        size = protocol.request_size(parts, io.max_payload)
        cond = self.cond
        for attempt in (1, 2):
            # Unlocked reads: a stale answer only costs the locked check below or a resend.
            if self.broken is not None or (not self.pending and not self.reader_active
                                           and io.closed_while_idle()):
                self._before_request()
            with cond:
                if io.closed:
                    raise ConnectionLostError("the client closed this connection")
                if self.broken is not None:
                    raise copy_error(self.broken)
                request_id = self._next_id
                self._next_id = protocol.next_request_id(request_id)
                if pending is not None:
                    pending.done = False  # a first attempt's link may have failed it
                    pending.error = None
                    self.pending[request_id] = pending
                else:
                    self.oneway.add(request_id)
                generation = io.generation
            protocol.pack_header(parts[0], message_type, request_id, size)
            if self._send(parts, generation, request_id):
                return request_id
            # Not a byte of it left: the link broke first, so the request surely did not
            # run. Once more on a new link.
            if attempt == 2 or self.repair is None:
                raise ConnectionLostError("the connection broke before the request was sent")

    def wait_locked(self, ready, deadline, busy_poll, deadline_to_begin=False):
        """Waits until ready() holds, as the reader (reads frames and hands each over) or as a
        follower (sleeps until the reader hands something over, or stops reading). False when
        the monotonic `deadline` (None: none) passed first. ready() is called with cond held,
        and must also hold once the link is broken, when nothing more will come.
        REQUIRES: cond held. Raises MidFrameTimeout when the deadline passed inside a frame
        (never with `deadline_to_begin`: see Transport.read_frame)."""
        cond = self.cond
        while not ready():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not self.reader_active:
                self.reader_active = True
                cond.release()
                try:
                    self._read_one(deadline, busy_poll, deadline_to_begin)
                finally:
                    cond.acquire()
                    self.reader_active = False
                    cond.notify_all()  # a follower takes over reading
                continue
            cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return True

    def _before_request(self):
        """A link that is broken, or that the daemon closed while idle: breaks the latter
        (unless a request went out on it meanwhile), then lets `repair` replace it."""
        with self.cond:
            if self.broken is None and not self.pending and not self.reader_active:
                self.break_link(ConnectionLostError("the daemon closed the connection"))
        repair = self.repair
        if repair is not None and not self.io.closed:
            repair()

    def _send(self, parts, generation, request_id):
        """Writes a request's frame. True when sent; False when not a byte of it went out
        (the link had broken: the caller may retry on a new one). A frame partly written
        breaks the link (the stream is out of step) and raises ConnectionLostError."""
        io = self.io
        try:
            with io.write_lock:
                if io.generation != generation or self.broken is not None:  # broken since the id was taken
                    sent = False
                else:
                    send_parts(io.sock, parts)
                    sent = True
        except SendFailed as e:
            with self.cond:
                self.pending.pop(request_id, None)
                if io.generation == generation:
                    self.break_link(ConnectionLostError("send failed: %s" % e.cause))
            if not e.sent_any:
                return False
            raise ConnectionLostError("send failed: %s" % e.cause) from None
        except BaseException:  # KeyboardInterrupt in the middle of a frame
            with self.cond:
                self.pending.pop(request_id, None)
                if io.generation == generation:
                    self.break_link(ConnectionLostError("interrupted while sending a request"))
            raise
        if not sent:
            with self.cond:
                self.pending.pop(request_id, None)
            return False
        io.last_sent = time.monotonic()
        return True

    def _read_one(self, deadline, busy_poll, deadline_to_begin=False):
        """As the reader (unlocked): reads one frame and hands it to its waiter, or to a hook.
        A failure breaks the link for everyone (the stream is out of step); so does a
        deadline that passes inside a frame, then re-raised as MidFrameTimeout."""
        io = self.io
        try:
            frame = io.read_frame(deadline, busy_poll, deadline_to_begin)
        except MidFrameTimeout:
            with self.cond:
                self.break_link(ConnectionLostError("no complete reply in time: the link was dropped"))
            raise
        except LabhostError as e:
            with self.cond:
                self.break_link(e)
            return
        except OSError as e:
            with self.cond:
                self.break_link(ConnectionLostError("receive failed: %s" % e))
            return
        except BaseException:
            if io.inside_large_frame:  # interrupted inside a large payload
                with self.cond:
                    self.break_link(ConnectionLostError("interrupted while reading a reply"))
            raise
        if frame is None:
            return  # deadline passed between frames: the stream is intact
        message_type, request_id, payload = frame
        if request_id == 0 and message_type == protocol.ERROR:
            # A connection-level error (busy, bad_frame, timeout) that the daemon sends just
            # before it closes the connection.
            try:
                error = protocol.error_from(codec.decode(payload, payload.start))
            except LabhostError as e:
                error = e
            with self.cond:
                self.break_link(error)
            return
        if message_type == protocol.EVENT:
            on_event = self.on_event
            if on_event is not None:
                on_event(request_id, payload)
            return
        with self.cond:
            pending = self.pending.pop(request_id, None)
            if pending is not None:  # replies nobody waits for (timed out) are dropped
                pending.type = message_type
                pending.payload = payload
                pending.done = True
                self.cond.notify_all()
                return
            oneway_failed = message_type == protocol.ERROR and request_id in self.oneway
        if oneway_failed and self.on_oneway_error is not None:
            try:
                error = protocol.error_from(codec.decode(payload, payload.start))
            except LabhostError as e:
                error = e
            self.on_oneway_error(error)

    def break_link(self, error, abortive=True):
        """Fails every waiting request with `error` (or the earlier break's) and wakes the
        reader. REQUIRES: cond held.

        `abortive` drops the link as a network failure would (the daemon sees a reset and
        keeps the session for a resume); otherwise the daemon sees an orderly close."""
        if self.broken is None:
            self.broken = error
            self.broken_at = time.monotonic()
        for pending in self.pending.values():
            pending.error = copy_error(self.broken)
            pending.done = True
        self.pending.clear()
        self.io.drop(abortive)
        self.cond.notify_all()

    @property
    def last_sent(self):
        """Monotonic time the last frame went out (heartbeats)."""
        return self.io.last_sent

    @property
    def closed_for_good(self):
        """True once the client closed this connection: it is never reconnected."""
        return self.io.closed

    def wait_reader_stopped(self, timeout):
        """False when the reader is still active after `timeout` seconds. REQUIRES: cond held."""
        return self.cond.wait_for(lambda: not self.reader_active, timeout=timeout)

    def replace_link(self, sock):
        """Puts a new connected socket in place of the broken one, and mends the break.
        REQUIRES: cond held, no reader active."""
        io = self.io
        with io.write_lock:
            old = io.sock
            io.attach(sock)
        try:
            old.close()
        except OSError:
            pass
        self.broken = None
        io.last_sent = time.monotonic()
