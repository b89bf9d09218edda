"""Reading whole frames off a raw socket, and a fake daemon, for tests that play the daemon's
side by hand."""

import socket
import struct
import threading

import labhost
from labhost import codec, protocol

__all__ = ["FakeServer", "FakeDaemon", "CloseAfter", "read_frame", "frame", "result", "event",
           "connection_to"]


class FakeServer:
    """A loopback listener that plays a daemon by hand: each connection is served by
    self._serve(conn, *self._accepted(conn)) on a thread of its own. A subclass sets its own
    attributes before calling __init__, which starts accepting."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn, *self._accepted(conn)), daemon=True).start()

    def _accepted(self, conn):
        """Extra arguments for _serve, made on the accepting thread before it starts."""
        return ()

    def _serve(self, conn, *extra):
        raise NotImplementedError

    def close(self):
        self.listener.close()
        for c in self.connections:
            c.close()


def read_frame(conn):
    """(message_type, request_id, decoded payload) of the next frame, or None once the peer
    closed."""
    data = b""
    while len(data) < 16:
        chunk = conn.recv(16 - len(data))
        if not chunk:
            return None
        data += chunk
    message_type, _, request_id, size = protocol.parse_header(data)
    payload = b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            return None
        payload += chunk
    return message_type, request_id, codec.decode(payload)


def frame(message_type, request_id, payload_bytes, magic=b"LHST", version=1, size=None):
    size = len(payload_bytes) if size is None else size
    return struct.pack("<4sBBHII", magic, version, message_type, 0, request_id, size) + payload_bytes


class CloseAfter(bytes):
    """A reply after which the fake daemon closes the connection."""


def result(request_id, value):
    return frame(protocol.RESULT, request_id, codec.encode(value))


def event(subscription, seq, value, dropped=0):
    """An event frame, as a daemon writes it (the value last)."""
    return frame(protocol.EVENT, subscription, codec.encode(
        {"subscription": subscription, "seq": seq, "dropped": dropped, "time": 1.8e9 + seq,
         "value": value}))


class FakeDaemon(FakeServer):
    """Accepts connections; answers hello with a welcome (lease `lease_ms`; 0: no
    heartbeats; protocol `version`), then answers each later request with
    script(request_id, request) -> bytes (b"": no answer; None: close). `answer_hello(request_id)`
    -> bytes replaces the welcome (then the connection closes), or None: the welcome after
    all. Every request is kept in `requests` as (type, request id, decoded payload)."""

    def __init__(self, script, answer_hello=None, lease_ms=0, version=1):
        self.script = script
        self.answer_hello = answer_hello
        self.lease_ms = lease_ms
        self.version = version
        self.requests = []
        super().__init__()

    def _serve(self, conn):
        try:
            hello = read_frame(conn)
            if hello is None:
                return
            if self.answer_hello is not None:
                answer = self.answer_hello(hello[1])
                if answer is not None:
                    conn.sendall(answer)
                    return
            welcome = {"version": self.version, "session_token": "f" * 32, "daemon": "fake",
                       "server_version": "0", "lease_ms": self.lease_ms, "resumed": False}
            conn.sendall(frame(protocol.WELCOME, hello[1], codec.encode(welcome)))
            while True:
                request = read_frame(conn)
                if request is None or request[0] == protocol.GOODBYE:
                    break
                self.requests.append(request)
                reply = self.script(request[1], request[2])
                if reply is None:
                    break
                conn.sendall(reply)
                if isinstance(reply, CloseAfter):
                    break
        except OSError:
            pass
        finally:
            conn.close()


def connection_to(d, **options):
    """A Connection to the fake daemon `d` (a 30 s reply timeout unless told)."""
    options.setdefault("timeout", 30)
    return labhost.Connection("127.0.0.1", d.port, client_name="hostile@test", **options)
