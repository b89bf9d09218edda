"""Finding labhost daemons on the local network without any configuration: DNS-SD over
multicast DNS (RFC 6762, RFC 6763), standard library only, so it needs no Avahi, Bonjour or
nameserver on this machine.

Each labhost daemon that listens beyond loopback announces itself through its host's Avahi
daemon as a service of type ``_labhost._tcp`` (core/naming/lan_announcer.h), named
"DAEMON on HOST", with the TXT records daemon=, services=, version=, tls= and auth=.

    for d in labhost.discover():
        print(d.name, d.address, d.port, d.services)      # main on labpc 192.168.1.20 7701 ['laser', 'stage']
    laser = labhost.connect(d.lab_address("laser"))      # or d.connect("laser")

How: discover() sends a one-shot query (RFC 6762 section 5.1) from an ordinary UDP port to the
mDNS group 224.0.0.251:5353 on every IPv4 interface: a PTR question for _labhost._tcp.local,
then SRV and TXT questions for each instance it learns of and an A question for each host,
until every instance is complete. The responders (avahi-daemon on each lab PC) answer such a
query straight to the asking port, usually with every record at once. Nothing listens on port
5353 here, so an Avahi daemon on this machine is neither needed nor disturbed. Firewalls: the
query goes out as UDP multicast to port 5353, and the answers come back as unicast UDP from
port 5353 of each lab PC.
"""

import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

__all__ = ["LanDaemon", "discover", "SERVICE_TYPE"]

SERVICE_TYPE = "_labhost._tcp.local"
MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353

_A, _PTR, _TXT, _AAAA, _SRV = 1, 12, 16, 28, 33
_CLASS_IN = 1
_MAX_POINTER_JUMPS = 64  # a compressed name's pointers, at most: a loop in a hostile packet ends here
_FOLLOW_UP_S = 0.3       # an incomplete instance or host is asked again at most this often
_FIRST_REPEAT_S = 0.5    # the PTR question is repeated after this, then at twice the interval


@dataclass(frozen=True)
class LanDaemon:
    """One labhost daemon found on the LAN.

    ``name``: its DNS-SD instance name ("main on labpc"); ``host``: its host's mDNS name
    ("labpc.local"); ``address``: the IPv4 address (or IPv6, when it has none) it answers on;
    ``port``; ``daemon``: its name in host.json; ``services``: its services' names;
    ``tls``: clients must speak TLS; ``auth``: clients must know the host's secret;
    ``version``: the labhost version it runs; ``more_services``: the list did not fit in one
    TXT string and is incomplete (``labhost.connect(d.lab_address()).services()`` has all).
    """

    name: str
    host: str
    address: str
    port: int
    daemon: str = ""
    services: list = field(default_factory=list)
    tls: bool = False
    auth: bool = False
    version: str = ""
    more_services: bool = False

    def lab_address(self, service=None):
        """``lab://ADDRESS:PORT/SERVICE`` (without a service: the daemon's ``lab://ADDRESS:PORT``).
        The address is numeric, so it works where .local names do not resolve."""
        host = "[%s]" % self.address if ":" in self.address else self.address
        base = "lab://%s:%d" % (host, self.port)
        if service is None:
            return base
        if self.services and not self.more_services and service not in self.services:
            raise ValueError("daemon %r (%s) serves %s, not %r"
                             % (self.daemon, self.name, ", ".join(self.services), service))
        return "%s/%s" % (base, service)

    def connect(self, service=None, **options):
        """``labhost.connect(self.lab_address(service), **options)``: a ServiceProxy, or a
        Daemon without a service. With ``tls`` or ``auth``, give the CA file or the secret as
        for connect (or set $LABHOST_TLS_CA, $LABHOST_SECRET_FILE)."""
        from . import connect
        return connect(self.lab_address(service), **options)


def discover(timeout=2.0):
    """The labhost daemons that answer on the LAN within `timeout` seconds, as a list of
    LanDaemon in name order. Waits the whole `timeout` (answers from slower hosts count too).
    Raises OSError when no interface can send the query (no network at all)."""
    if timeout < 0:
        raise ValueError("timeout must be 0 or more seconds")
    deadline = time.monotonic() + timeout
    answers = _Answers()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        # RFC 6762 section 11: mDNS packets are sent with IP TTL 255 (and checked for it).
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # daemons of this machine too
        sender = _Sender(sock, _ipv4_interfaces())
        sender.send([(SERVICE_TYPE, _PTR)])
        repeat_at, repeat_interval = time.monotonic() + _FIRST_REPEAT_S, _FIRST_REPEAT_S
        asked = {}  # question -> when it was last asked
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= repeat_at:  # a lost packet, or a host that came up meanwhile
                sender.send([(SERVICE_TYPE, _PTR)])
                repeat_interval *= 2
                repeat_at = now + repeat_interval
            for question in answers.missing():
                if now - asked.get(question, -1e9) >= _FOLLOW_UP_S:
                    asked[question] = now
                    sender.send([question])
            wait = max(0.0, min(deadline, repeat_at, now + _FOLLOW_UP_S) - now)
            if not select.select([sock], [], [], wait)[0]:
                continue
            try:
                packet, (_, source_port) = sock.recvfrom(9000)
            except OSError:
                continue
            if source_port == MDNS_PORT:  # responders answer from the mDNS port
                answers.add_packet(packet)
    return answers.daemons()


class _Sender:
    """Sends questions on every IPv4 interface (an interface without a default route gets no
    multicast otherwise), or through the system's default when none is known."""

    def __init__(self, sock, interfaces):
        self.sock = sock
        self.interfaces = interfaces or [None]
        self.query_id = int.from_bytes(os.urandom(2), "big") or 1

    def send(self, questions):
        packet = _query(self.query_id, questions)
        sent, errors = 0, []
        for address in self.interfaces:
            try:
                if address is not None:
                    self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
                self.sock.sendto(packet, (MDNS_GROUP, MDNS_PORT))
                sent += 1
            except OSError as e:
                errors.append("%s: %s" % (address or "default interface", e))
        if sent == 0:
            raise OSError("labhost.discover: the mDNS query could not be sent on any interface (%s)"
                          % "; ".join(errors))


def _ipv4_interfaces():
    """The IPv4 address of each interface that is up, not loopback, and multicast-capable."""
    found = []
    if sys.platform.startswith("linux"):
        try:
            import fcntl
            siocgifflags, siocgifaddr = 0x8913, 0x8915
            iff_up, iff_loopback, iff_multicast = 0x1, 0x8, 0x1000
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                for _, name in socket.if_nameindex():
                    request = struct.pack("256s", name.encode()[:15])
                    try:
                        flags = struct.unpack_from("H", fcntl.ioctl(probe.fileno(), siocgifflags, request), 16)[0]
                        if not flags & iff_up or flags & iff_loopback or not flags & iff_multicast:
                            continue
                        reply = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
                    except OSError:  # no IPv4 address on it
                        continue
                    found.append(socket.inet_ntoa(reply[20:24]))
        except (ImportError, OSError):
            found = []
    if not found:
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            found = sorted({info[4][0] for info in infos if not info[4][0].startswith("127.")})
        except OSError:
            pass
    return found


# ------------------------------------------------------------------- DNS messages (RFC 1035)

def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError("bad DNS label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _encode_labels(labels):
    return b"".join(bytes([len(raw)]) + raw for raw in (l.encode() for l in labels)) + b"\0"


def _query(query_id, questions):
    """A query: header (the id a one-shot querier's responder copies back), then each question
    (a name as labels, or as a dotted string, and a type; class IN)."""
    body = b""
    for name, qtype in questions:
        encoded = _encode_labels(name) if isinstance(name, tuple) else _encode_name(name)
        body += encoded + struct.pack("!HH", qtype, _CLASS_IN)
    return struct.pack("!HHHHHH", query_id, 0, len(questions), 0, 0, 0) + body


def _read_name(packet, offset):
    """(labels, offset after the name). Follows compression pointers (RFC 1035 4.1.4)."""
    labels = []
    end = None
    jumps = 0
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if jumps >= _MAX_POINTER_JUMPS:
                raise ValueError("name compression loop")
            jumps += 1
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            continue
        if length & 0xC0:
            raise ValueError("bad label length")
        offset += 1
        if length == 0:
            break
        if offset + length > len(packet):
            raise ValueError("label beyond the packet")
        labels.append(packet[offset:offset + length].decode("utf-8", "replace"))
        offset += length
    return tuple(labels), (end if end is not None else offset)


def _records(packet):
    """Every resource record of a response: (name labels, type, ttl, rdata offset, rdata)."""
    if len(packet) < 12:
        raise ValueError("short packet")
    _, flags, questions, answers, authorities, additionals = struct.unpack_from("!HHHHHH", packet)
    if not flags & 0x8000:
        return []  # a query, not a response
    offset = 12
    for _ in range(questions):
        _, offset = _read_name(packet, offset)
        offset += 4
    out = []
    for _ in range(answers + authorities + additionals):
        name, offset = _read_name(packet, offset)
        rtype, _, ttl, length = struct.unpack_from("!HHIH", packet, offset)
        offset += 10
        if offset + length > len(packet):
            raise ValueError("record beyond the packet")
        out.append((name, rtype, ttl, offset, packet[offset:offset + length]))
        offset += length
    return out


def _key(labels):
    return tuple(l.lower() for l in labels)  # DNS names compare without case


_SERVICE_KEY = _key(tuple(SERVICE_TYPE.split(".")))


class _Answers:
    """What the responders said: instances (PTR), their SRV and TXT, and host addresses."""

    def __init__(self):
        self.instances = {}  # key -> instance labels
        self.srv = {}        # instance key -> (port, target labels)
        self.txt = {}        # instance key -> {key: value}
        self.ipv4 = {}       # host key -> address
        self.ipv6 = {}       # host key -> address

    def add_packet(self, packet):
        try:
            records = _records(packet)
        except (ValueError, IndexError, struct.error):
            return  # not a DNS message we can read: ignored, as RFC 6762 says
        for name, rtype, ttl, offset, rdata in records:
            try:
                self._add(packet, _key(name), rtype, ttl, offset, rdata)
            except (ValueError, IndexError, struct.error):
                continue

    def _add(self, packet, name, rtype, ttl, offset, rdata):
        goodbye = ttl == 0  # RFC 6762 10.1: the record is withdrawn
        if rtype == _PTR and name == _SERVICE_KEY:
            instance, _ = _read_name(packet, offset)
            if goodbye:
                self.instances.pop(_key(instance), None)
            else:
                self.instances[_key(instance)] = instance
        elif rtype == _SRV:
            _, _, port = struct.unpack_from("!HHH", rdata)
            target, _ = _read_name(packet, offset + 6)
            if goodbye:
                self.srv.pop(name, None)
            else:
                self.srv[name] = (port, target)
        elif rtype == _TXT:
            if goodbye:
                self.txt.pop(name, None)
            else:
                self.txt[name] = _parse_txt(rdata)
        elif rtype == _A and len(rdata) == 4:
            if goodbye:
                self.ipv4.pop(name, None)
            else:
                self.ipv4[name] = socket.inet_ntoa(rdata)
        elif rtype == _AAAA and len(rdata) == 16:
            if goodbye:
                self.ipv6.pop(name, None)
            else:
                self.ipv6[name] = socket.inet_ntop(socket.AF_INET6, rdata)

    def missing(self):
        """Questions whose answers have not come yet: SRV and TXT of an instance, A of a host."""
        questions = []
        for key, labels in self.instances.items():
            if key not in self.srv:
                questions.append((labels, _SRV))
            if key not in self.txt:
                questions.append((labels, _TXT))
        for port_target in self.srv.values():
            target = port_target[1]
            if _key(target) not in self.ipv4 and _key(target) not in self.ipv6:
                questions.append((target, _A))
        return questions

    def daemons(self):
        out = []
        for key, labels in self.instances.items():
            if key not in self.srv:
                continue
            port, target = self.srv[key]
            address = self.ipv4.get(_key(target)) or self.ipv6.get(_key(target))
            if address is None:
                continue
            txt = self.txt.get(key, {})
            services = [s for s in txt.get("services", "").split(",") if s]
            out.append(LanDaemon(name=labels[0], host=".".join(target), address=address, port=port,
                                 daemon=txt.get("daemon", ""), services=services, tls=txt.get("tls") == "1",
                                 auth=txt.get("auth") == "1", version=txt.get("version", ""),
                                 more_services=txt.get("more_services") == "1"))
        return sorted(out, key=lambda d: d.name)


def _parse_txt(rdata):
    """TXT strings (RFC 6763 6): "key=value" pairs; a key alone is "" here. The first of a key
    counts; keys compare without case."""
    pairs = {}
    offset = 0
    while offset < len(rdata):
        length = rdata[offset]
        item = rdata[offset + 1:offset + 1 + length].decode("utf-8", "replace")
        offset += 1 + length
        key, _, value = item.partition("=")
        if key and key.lower() not in pairs:
            pairs[key.lower()] = value
    return pairs
