"""The multiplexer layer: several requests in flight on one transport.

Each request takes a request id (1 to 2**32 - 1, wrapping; id 0 is the daemon's, for errors of
the whole connection) and a slot in the table of waiting replies. Reading follows the
leader/follower pattern: a thread waiting for its reply either becomes the reader (reads
frames and hands each to its waiter) or sleeps until the reader hands it its reply. A lone
caller thus reads its own reply: no thread hop. When the link breaks, every waiting request
fails with the error that broke it (break_link). Whether a broken link is replaced by a new
one is the session's decision (session.py), asked through the `repair` hook before a request.

Thread-safety: any thread may send requests at once. `cond` guards the table, the reader's
flag, the break and the next id; frames are written whole under the transport's write lock;
the reader reads with neither held.
"""

import threading
import time

from . import codec, protocol
from .errors import BadFrameError, BadMessageError, ConnectionLostError, LabhostError, LabhostTimeoutError
from .transport import PAD, MidFrameTimeout, SendFailed, copy_error, send_parts

__all__ = ["Multiplexer", "DEFAULT", "expect"]

DEFAULT = object()  # a request's timeout when none is given: the multiplexer's own


def expect(reply, expected):
    """The value of a reply (type, payload buffer) of the type `expected`; an error reply
    raises its typed error, another type BadMessageError."""
    message_type, payload = reply
    value = codec.decode(payload, PAD)
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


class Multiplexer:
    """Requests and their replies on one Transport `io`. `timeout`: seconds to wait for each
    reply when a request gives none (None: as long as it takes)."""

    def __init__(self, io, timeout=None):
        self.io = io
        self.timeout = timeout
        self.cond = threading.Condition(threading.Lock())
        self.pending = {}           # request id -> _Pending
        self.reader_active = False
        self.broken = None          # the error that made the current link unusable
        self._next_id = 1
        # Called (unlocked) before a request on a broken link, or on one the daemon closed
        # while it was idle; it may replace the link. None: a broken link stays broken, and a
        # request whose link broke before any of it went out is not sent again.
        self.repair = None

    def request_value(self, message_type, payload, timeout=DEFAULT, busy_poll=True):
        """request() of a message given as a value."""
        parts = codec.encode_into(bytearray(protocol.HEADER_SIZE), payload)
        return self.request(message_type, parts, timeout, busy_poll)

    def request(self, message_type, parts, timeout=DEFAULT, busy_poll=True):
        """Sends one request and waits for its reply: (type, payload buffer). `parts`: the
        frame's buffers, the first starting with room for the header. As the reader, polls
        before sleeping when `busy_poll` (transport._BusyPoll)."""
        io = self.io
        size = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts) \
            - protocol.HEADER_SIZE
        if size > io.max_payload:
            raise BadFrameError("request payload of %d bytes exceeds the maximum of %d"
                                % (size, io.max_payload))
        if timeout is DEFAULT:
            timeout = self.timeout
        cond = self.cond
        for attempt in (1, 2):
            # Unlocked reads: a stale answer only costs the locked check below or a resend.
            if self.broken is not None or (not self.pending and not self.reader_active
                                           and io.closed_while_idle()):
                self._before_request()
            pending = _Pending()
            with cond:
                if io.closed:
                    raise ConnectionLostError("the client closed this connection")
                if self.broken is not None:
                    raise copy_error(self.broken)
                request_id = self._next_id
                self._next_id = request_id + 1 if request_id < 0xFFFFFFFF else 1
                self.pending[request_id] = pending
                generation = io.generation
            protocol.pack_header(parts[0], message_type, request_id, size)
            if self._send(parts, generation, request_id, pending):
                break
            # Not a byte of it left: the link broke first, so the request surely did not
            # run. Once more on a new link.
            if attempt == 2 or self.repair is None:
                raise ConnectionLostError("the connection broke before the request was sent")

        deadline = None if timeout is None else time.monotonic() + timeout
        with cond:
            try:
                while not pending.done:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LabhostTimeoutError("no reply within %g s" % timeout)
                    if not self.reader_active:
                        self.reader_active = True
                        cond.release()
                        try:
                            self._read_one(deadline, busy_poll)
                        except MidFrameTimeout:
                            # The link was dropped (the others in flight see connection_lost);
                            # this request simply timed out.
                            raise LabhostTimeoutError(
                                "no reply within %g s (the link was dropped inside a frame)"
                                % timeout) from None
                        finally:
                            cond.acquire()
                            self.reader_active = False
                            cond.notify_all()  # a follower takes over reading
                        continue
                    cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except BaseException:  # timeout, or KeyboardInterrupt: its reply will be dropped
                self.pending.pop(request_id, None)
                raise
        if pending.error is not None:
            raise pending.error
        return pending.type, pending.payload

    def _before_request(self):
        """A link that is broken, or that the daemon closed while idle: breaks the latter
        (unless a request went out on it meanwhile), then lets `repair` replace it."""
        with self.cond:
            if self.broken is None and not self.pending and not self.reader_active:
                self.break_link(ConnectionLostError("the daemon closed the connection"))
        repair = self.repair
        if repair is not None and not self.io.closed:
            repair()

    def _send(self, parts, generation, request_id, pending):
        """Writes a request's frame. True when sent; False when not a byte of it went out
        (the link had broken: the caller may retry on a new one). A frame partly written
        breaks the link (the stream is out of step) and raises ConnectionLostError."""
        io = self.io
        try:
            with io.write_lock:
                if io.generation != generation or pending.done:  # broken since the id was taken
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

    def _read_one(self, deadline, busy_poll):
        """As the reader (unlocked): reads one frame and hands it to its waiter. A failure
        breaks the link for everyone (the stream is out of step); so does a deadline that
        passes inside a frame, then re-raised as MidFrameTimeout."""
        io = self.io
        try:
            frame = io.read_frame(deadline, busy_poll)
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
                error = protocol.error_from(codec.decode(payload, PAD))
            except LabhostError as e:
                error = e
            with self.cond:
                self.break_link(error)
            return
        with self.cond:
            pending = self.pending.pop(request_id, None)
            if pending is not None:  # replies nobody waits for (timed out) are dropped
                pending.type = message_type
                pending.payload = payload
                pending.done = True
                self.cond.notify_all()

    def break_link(self, error, abortive=True):
        """Fails every waiting request with `error` (or the earlier break's) and wakes the
        reader. REQUIRES: cond held.

        `abortive` drops the link as a network failure would (the daemon sees a reset and
        keeps the session for a resume); otherwise the daemon sees an orderly close."""
        if self.broken is None:
            self.broken = error
        for pending in self.pending.values():
            pending.error = copy_error(self.broken)
            pending.done = True
        self.pending.clear()
        self.io.drop(abortive)
        self.cond.notify_all()

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
