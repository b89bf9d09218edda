"""The asyncio client's transport layer: one connection to a daemon, plain TCP or TLS over
it, as an asyncio protocol that reads whole frames and writes whole frames.

It reads into a receive buffer of its own (asyncio.BufferedProtocol: the event loop reads
straight into it) and hands each complete frame to its `sink`: (type, request id, Payload
holding the payload from its `start`, placed so that its first typed array is aligned; it
decodes without a copy, as with the sync client). A frame too large for the receive buffer
is read straight into its own payload buffer. Until a sink is set (during the handshake) frames
are kept, for next_frame(). Headers are checked before anything is allocated for the payload
(protocol.parse_header): a bad one loses the link, whose stream cannot be resynchronised.

Everything here runs on the event loop's thread.
"""

import asyncio
import collections
import socket

from .. import protocol, transport as sync_transport
from ..errors import ConnectionLostError, LabhostError
from ..transport import LOOKAHEAD, copy_error, new_payload, tls_handshake_error, tls_read_error

__all__ = ["FrameProtocol", "connect"]

_RECV_BUFFER = 256 * 1024
_LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close() sends a reset


class FrameProtocol(asyncio.BufferedProtocol):
    """One link: frames in, frames out. `lost` is the error the link was lost with (None
    while it is up); `on_lost(protocol, error)` is called once when it is lost."""

    def __init__(self, max_payload):
        self.max_payload = max_payload
        self.transport = None
        self.sink = None           # (type, request id, payload) -> None; None: keep frames
        self.kept = collections.deque()
        self.on_lost = None
        self.lost = None
        self.closed = asyncio.get_running_loop().create_future()  # done once the transport is closed
        self._waiter = None        # next_frame()'s
        self._drain = None         # a future while writing is paused
        self._paused = False
        self._buffer = bytearray(_RECV_BUFFER)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0
        self._large = None         # [type, request id, payload, bytes in it] while reading one

    # ------------------------------------------------------------------ asyncio's callbacks

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def get_buffer(self, sizehint):
        large = self._large
        if large is not None:
            return memoryview(large[2])[large[3]:]
        if self._end == len(self._buffer):  # full: move what is left of a frame to the front
            kept = self._end - self._start
            self._buffer[:kept] = self._view[self._start:self._end]
            self._start, self._end = 0, kept
        return self._view[self._end:]

    def buffer_updated(self, nbytes):
        large = self._large
        if large is not None:
            large[3] += nbytes
            if large[3] == len(large[2]):
                self._large = None
                self._deliver(large[0], large[1], large[2])
            return
        self._end += nbytes
        self._parse()

    def eof_received(self):
        return False  # asyncio closes the transport, then connection_lost

    def connection_lost(self, exc):
        if self.lost is None:
            if exc is None:
                self.lost = ConnectionLostError("the daemon closed the connection")
            elif isinstance(exc, LabhostError):
                self.lost = exc
            elif isinstance(exc, sync_transport.SSL_ERROR):  # () until TLS is used
                self.lost = tls_read_error(exc)
            else:
                self.lost = ConnectionLostError("receive failed: %s" % exc)
        self._wake_reader()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self, self.lost)

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ------------------------------------------------------------------ reading

    def _parse(self):
        """Hands over every complete frame in the receive buffer."""
        while self._end - self._start >= protocol.HEADER_SIZE:
            start = self._start
            try:
                message_type, _, request_id, size = protocol.parse_header(
                    self._view[start:start + protocol.HEADER_SIZE], self.max_payload)
            except LabhostError as e:  # the stream is out of step: the link is lost
                self.fail(e)
                return
            total = protocol.HEADER_SIZE + size
            have = self._end - start
            body = start + protocol.HEADER_SIZE
            # A whole frame that fits the receive buffer is taken from there; of a larger one,
            # first the start of its payload, which says where its buffer's start must be.
            needed = total if total <= len(self._buffer) else protocol.HEADER_SIZE + min(size, LOOKAHEAD)
            if have < needed:
                if start + needed > len(self._buffer):  # make room at the end
                    self._buffer[:have] = self._view[start:self._end]
                    self._start, self._end = 0, have
                return
            payload = new_payload(self._view[body:body + min(size, LOOKAHEAD)], size)
            if total > len(self._buffer):
                # A large frame: the rest of its payload goes straight into its buffer.
                got = self._end - body
                payload[payload.start:payload.start + got] = self._view[body:self._end]
                self._start = self._end = 0
                self._large = [message_type, request_id, payload, payload.start + got]
                return
            payload[payload.start:] = self._view[body:start + total]
            self._start = start + total
            self._deliver(message_type, request_id, payload)
            if self.lost is not None or self.transport.is_closing():
                return
        if self._start == self._end:
            self._start = self._end = 0

    def _deliver(self, message_type, request_id, payload):
        sink = self.sink
        if sink is not None:
            sink(message_type, request_id, payload)
        else:
            self.kept.append((message_type, request_id, payload))
            self._wake_reader()

    def _wake_reader(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_frame(self):
        """(type, request id, payload) of the next frame kept while no sink is set (the
        handshake's). Raises the error the link was lost with."""
        while not self.kept:
            if self.lost is not None:
                raise copy_error(self.lost)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self.kept.popleft()

    def take_kept(self):
        """The frames kept so far (that came after the handshake), oldest first."""
        frames = list(self.kept)
        self.kept.clear()
        return frames

    # ------------------------------------------------------------------ writing

    def write(self, parts):
        """Writes one frame's buffers, in order. False when not a byte of it went out: the
        link was lost or closing, or broke on the first write (asyncio then closes the
        transport at once). Raises ConnectionLostError when it broke after part of the frame
        went out."""
        transport = self.transport
        if self.lost is not None or transport is None or transport.is_closing():
            return False
        for i, part in enumerate(parts):
            transport.write(part)
            if transport.is_closing():  # the write failed: asyncio is closing the link
                if i == 0:
                    return False
                raise ConnectionLostError("send failed: the connection broke inside a request")
        return True

    async def drain(self):
        """Waits while the transport's write buffer is above its high-water mark."""
        if self._paused and self.lost is None:
            if self._drain is None or self._drain.done():
                self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    @property
    def paused(self):
        return self._paused

    def fileno(self):
        """The socket's descriptor, or -1."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        return sock.fileno() if sock is not None else -1

    # ------------------------------------------------------------------ closing

    def fail(self, error):
        """Loses the link with `error`, as a network failure would (see drop)."""
        if self.lost is None:
            self.lost = error
        self.drop(abortive=True)

    def drop(self, abortive):
        """Closes the link. `abortive`: as a network failure would (a reset: the daemon keeps
        the session for a resume); otherwise in an orderly way, after what is queued to be
        written (the daemon reads end-of-stream and ends the session)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if abortive:
            sock = transport.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
            transport.abort()
        else:
            transport.close()


async def connect(host, port, max_payload, ssl_context):
    """A FrameProtocol connected to host:port, over TLS when `ssl_context` is given (the
    daemon's certificate must name `host`). Raises ConnectionLostError, or AuthFailedError
    when the certificates do not check out."""
    loop = asyncio.get_running_loop()
    where = "%s:%d" % (host, port)
    try:
        _, link = await loop.create_connection(
            lambda: FrameProtocol(max_payload), host, port, ssl=ssl_context,
            server_hostname=host if ssl_context is not None else None)
    except OSError as e:
        if isinstance(e, sync_transport.SSL_ERROR):
            raise tls_handshake_error(e, where) from None
        if ssl_context is not None and isinstance(e, ConnectionResetError):
            raise ConnectionLostError("TLS handshake with %s failed: %s" % (where, e)) from None
        raise ConnectionLostError("cannot connect to %s: %s" % (where, e)) from None
    return link
