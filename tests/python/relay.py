"""A TCP relay on loopback between a client and a daemon, whose links a test can cut with
resets, as a network failure would."""

import select
import socket
import threading

__all__ = ["Relay", "lock_cut_and_resume"]


def lock_cut_and_resume(relay, daemon, connect, client_name, **options):
    """Locks daemon's laser from a client connected through `relay`, cuts the link with a
    reset, and checks that the next call resumes the session on a new connection with its
    lock (another client is refused). Returns (holder, other) for more checks."""
    import labhost
    import pytest
    holder = connect("lab://127.0.0.1:%d/laser" % relay.port, client_name=client_name, **options)
    other = connect(daemon.address("laser"), **options)
    assert relay.accepted.acquire(timeout=10)
    holder.lock()
    token = holder.connection.session_token
    link = holder.connection._io.sock
    relay.cut()
    try:  # wait for the reset to reach the client's socket (an event, not a guess)
        select.select([link], [], [], 10.0)
    except (OSError, ValueError):
        pass  # the heartbeat thread saw it first and replaced the socket
    # The next call reconnects through the relay (a new TCP connection, so the whole
    # handshake again), then resumes.
    assert holder.wavelength() == 1550.0
    assert relay.accepted.acquire(timeout=10)
    assert holder.connection.resumed and holder.connection.session_token == token
    assert holder.lock_status().yours
    with pytest.raises(labhost.LockedError, match=client_name):
        other.wavelength()
    return holder, other


class Relay:
    """A TCP relay between a client and a daemon whose links the test can cut with resets,
    as a network failure would: neither end sees an orderly close."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.links = []
        self.lock = threading.Lock()
        self.accepted = threading.Semaphore(0)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=30)
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pumps = [threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
                     threading.Thread(target=self._pump, args=(upstream, client), daemon=True)]
            with self.lock:  # started before cut() can see them: it joins them
                self.links.append((client, upstream, pumps))
                for pump in pumps:
                    pump.start()
            self.accepted.release()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass

    def cut(self):
        """Resets every link, both ways. When it returns, the resets have been sent: the pumps
        are stopped first, since a socket closed while a pump is inside recv() on it would be
        released (and reset) only when that recv() returns."""
        with self.lock:
            links, self.links = self.links, []
        for client, upstream, pumps in links:
            for s in (client, upstream):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                try:
                    s.shutdown(socket.SHUT_RD)  # wakes the pump reading it
                except OSError:
                    pass
            for pump in pumps:
                pump.join(timeout=10)
            for s in (client, upstream):
                s.close()

    def close(self):
        self.listener.close()
        self.cut()
