"""Reading whole frames off a raw socket, for tests that play the daemon's side by hand."""

import socket
import threading

from labhost import codec, protocol

__all__ = ["FakeServer", "read_frame"]


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
