"""Reading whole frames off a raw socket, for tests that play the daemon's side by hand."""

from labhost import codec, protocol

__all__ = ["read_frame"]


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
