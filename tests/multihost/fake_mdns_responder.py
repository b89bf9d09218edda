"""A terse mDNS responder for tests/multihost/test_lan_discovery.py: it announces one labhost
instance, "fake on fk", and answers each question of a one-shot query (RFC 6762 5.1, from a
port other than 5353) with that one record only, names compressed, so that
labhost.discover() must ask for the SRV, the TXT and the host's address itself (avahi-daemon
answers a PTR question with every record at once).

    fake_mdns_responder.py ADDRESS    serves on the interface holding ADDRESS; prints
                                      "listening", then one line per question it answers

Instance "fake on fk", port 7799, host fk-host.local at ADDRESS, TXT daemon=fake,
services=alpha,beta, version=9.9.9, tls=0, auth=1.
"""

import socket
import struct
import sys

PTR, TXT, SRV, A = 12, 16, 33, 1
SERVICE = ("_labhost", "_tcp", "local")
INSTANCE = ("fake on fk",) + SERVICE
HOST = ("fk-host", "local")
PORT = 7799
TXT_STRINGS = ["daemon=fake", "services=alpha,beta", "version=9.9.9", "tls=0", "auth=1"]


def read_name(packet, offset):
    labels, end, jumps = [], None, 0
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            jumps += 1
            if jumps > 32:
                raise ValueError("loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            continue
        offset += 1
        if length == 0:
            return tuple(labels), (end if end is not None else offset)
        labels.append(packet[offset:offset + length].decode())
        offset += length


class Writer:
    """A DNS message whose names are compressed against every name written before."""

    def __init__(self):
        self.data = bytearray()
        self.names = {}  # lower-case label suffix -> offset

    def name(self, labels):
        for i in range(len(labels)):
            suffix = tuple(l.lower() for l in labels[i:])
            if suffix in self.names:
                self.data += struct.pack("!H", 0xC000 | self.names[suffix])
                return
            if len(self.data) < 0x3FFF:
                self.names[suffix] = len(self.data)
            raw = labels[i].encode()
            self.data += bytes([len(raw)]) + raw
        self.data += b"\0"

    def record(self, labels, rtype, ttl, write_rdata):
        self.name(labels)
        self.data += struct.pack("!HHI", rtype, 1, ttl)
        length_at = len(self.data)
        self.data += b"\0\0"
        write_rdata()
        struct.pack_into("!H", self.data, length_at, len(self.data) - length_at - 2)


def answer(query, address):
    query_id, flags, questions = struct.unpack_from("!HHH", query)
    if flags & 0x8000:
        return None, []
    offset, asked = 12, []
    for _ in range(questions):
        name, offset = read_name(query, offset)
        qtype, _ = struct.unpack_from("!HH", query, offset)
        offset += 4
        asked.append((tuple(l.lower() for l in name), qtype))
    w = Writer()
    w.data += struct.pack("!HHHHHH", query_id, 0x8400, 0, 0, 0, 0)
    count, answered = 0, []
    for name, qtype in asked:
        if name == tuple(l.lower() for l in SERVICE) and qtype == PTR:
            w.record(SERVICE, PTR, 10, lambda: w.name(INSTANCE))
        elif name == tuple(l.lower() for l in INSTANCE) and qtype == SRV:
            def srv():
                w.data += struct.pack("!HHH", 0, 0, PORT)
                w.name(HOST)
            w.record(INSTANCE, SRV, 10, srv)
        elif name == tuple(l.lower() for l in INSTANCE) and qtype == TXT:
            def txt():
                for s in TXT_STRINGS:
                    w.data += bytes([len(s)]) + s.encode()
            w.record(INSTANCE, TXT, 10, txt)
        elif name == tuple(l.lower() for l in HOST) and qtype == A:
            w.record(HOST, A, 10, lambda: w.data.extend(socket.inet_aton(address)))
        else:
            continue
        count += 1
        answered.append("%s %d" % (".".join(name), qtype))
    if count == 0:
        return None, []
    struct.pack_into("!H", w.data, 6, count)
    return bytes(w.data), answered


def main(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 5353))
    membership = socket.inet_aton("224.0.0.251") + socket.inet_aton(address)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    print("listening", flush=True)
    while True:
        query, (source, port) = sock.recvfrom(9000)
        if port == 5353:
            continue  # a full mDNS querier (avahi-daemon): this responder answers one-shot queries only
        try:
            reply, answered = answer(query, address)
        except (ValueError, IndexError, struct.error):
            continue
        if reply is not None:
            sock.sendto(reply, (source, port))
            for line in answered:
                print("answered %s" % line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
