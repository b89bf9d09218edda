"""Frames and messages of labhost's wire protocol, versions 1 and 2 (docs/protocol.md;
core/protocol/frame.h, messages.h). No I/O here: the sync client (session.py) and the asyncio
client (aio/) both build and read their messages, and open their sessions (Handshake), here.

A frame is a 16-byte header followed by a payload of one encoded value::

    offset size
    0      4    magic "LHST"
    4      1    framing version (1, in protocol versions 1 and 2 alike)
    5      1    message type
    6      2    flags (u16, sent as 0, ignored)
    8      4    request id (u32; 0 on a daemon's error = a connection-level error)
    12     4    payload length (u32), checked against a maximum before allocating

All integers are little-endian.
"""

import hashlib
import hmac
import os
import struct

from . import codec
from .errors import (AuthFailedError, BadFrameError, BadMessageError, UnsupportedVersionError,
                     make_error)
from .events import Event

MAGIC = b"LHST"
FRAMING_VERSION = 1          # the header's version byte
OLDEST_PROTOCOL_VERSION = 1  # hello's min_version
PROTOCOL_VERSION = 2         # hello's max_version: shaped arrays, events, oneway calls
HEADER_SIZE = 16
DEFAULT_MAX_PAYLOAD = 64 << 20  # 64 MiB: a few camera frames

# message types (the byte at offset 5)
HELLO = 1         # client -> daemon: opens a session
WELCOME = 2       # daemon -> client: session accepted
CALL = 3          # client -> daemon: call a method
RESULT = 4        # daemon -> client: a call's return value (also lock, unlock, lock_status)
ERROR = 5         # daemon -> client: a request failed (typed error)
DESCRIBE = 6      # client -> daemon: list services, or one service's methods
DESCRIPTION = 7   # daemon -> client: answer to describe
PING = 8          # either way: liveness (the client's heartbeat)
PONG = 9          # answer to ping
GOODBYE = 10      # client -> daemon: ends the session cleanly (no reply)
LOCK = 11         # client -> daemon: lock a service for this session
UNLOCK = 12       # client -> daemon: release it, or force-release it (admin)
LOCK_STATUS = 13  # client -> daemon: who holds which lock
CHALLENGE = 14    # daemon -> client: answer to hello when the daemon requires a secret
AUTHENTICATE = 15 # client -> daemon: the client's proof of the secret, answering a challenge
SUBSCRIBE = 16    # client -> daemon: events of a topic (version 2); answered by result
UNSUBSCRIBE = 17  # client -> daemon: no more of them (version 2); answered by result
EVENT = 18        # daemon -> client: one published value; request id = the subscription's id

MESSAGE_NAMES = {
    HELLO: "hello", WELCOME: "welcome", CALL: "call", RESULT: "result", ERROR: "error",
    DESCRIBE: "describe", DESCRIPTION: "description", PING: "ping", PONG: "pong",
    GOODBYE: "goodbye", LOCK: "lock", UNLOCK: "unlock", LOCK_STATUS: "lock_status",
    CHALLENGE: "challenge", AUTHENTICATE: "authenticate", SUBSCRIBE: "subscribe",
    UNSUBSCRIBE: "unsubscribe", EVENT: "event",
}

_header = struct.Struct("<4sBBHII")


def pack_header(out, message_type, request_id, payload_size):
    """Writes a header into the first 16 bytes of the bytearray `out`."""
    _header.pack_into(out, 0, MAGIC, FRAMING_VERSION, message_type, 0, request_id, payload_size)


def parse_header(data, max_payload=DEFAULT_MAX_PAYLOAD):
    """(type, flags, request_id, payload_size) of a 16-byte header, checked: magic, framing
    version, known type, payload_size <= max_payload. Raises BadFrameError or
    UnsupportedVersionError.
    """
    magic, version, message_type, flags, request_id, size = _header.unpack_from(data, 0)
    if magic != MAGIC:
        raise BadFrameError("bad magic: not a labhost frame")
    if version != FRAMING_VERSION:
        raise UnsupportedVersionError(
            "frame version %d, this peer speaks version %d" % (version, FRAMING_VERSION))
    if message_type not in MESSAGE_NAMES:
        raise BadFrameError("unknown message type %d" % message_type)
    if size > max_payload:
        raise BadFrameError("payload of %d bytes exceeds the maximum of %d" % (size, max_payload))
    return message_type, flags, request_id, size


def encode_frame(message_type, request_id, payload):
    """A complete frame as a list of buffers to send in order (header in the first)."""
    parts = codec.encode_into(bytearray(HEADER_SIZE), payload)
    size = sum(len(p) if not isinstance(p, memoryview) else p.nbytes for p in parts) - HEADER_SIZE
    pack_header(parts[0], message_type, request_id, size)
    return parts, size


def request_size(parts, max_payload):
    """The payload size of a request given as its frame's parts (the first with the header's
    room); BadFrameError, before anything is sent, when it is over `max_payload`."""
    if len(parts) == 1:  # a small request: one buffer
        size = len(parts[0]) - HEADER_SIZE
    else:
        size = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts) - HEADER_SIZE
    if size > max_payload:
        raise BadFrameError("request payload of %d bytes exceeds the maximum of %d"
                            % (size, max_payload))
    return size


def next_request_id(request_id):
    """The id after `request_id`: 1 to 2**32 - 1, wrapping; 0 is the daemon's (errors of the
    whole connection)."""
    return request_id + 1 if request_id < 0xFFFFFFFF else 1


def frame_bytes(message_type, request_id, payload):
    """A complete frame as one bytes object."""
    parts, _ = encode_frame(message_type, request_id, payload)
    return b"".join(parts)


# --------------------------------------------------------------------------- messages


def hello(client_name, pid, session_token="", client_nonce=None):
    """The hello message, for protocol versions 1 to 2 (the daemon picks the highest it
    speaks too); `client_nonce` (NONCE_SIZE random bytes) only when the client has a secret: a
    daemon that requires one answers with a challenge, else with an auth_failed error."""
    message = {
        "client_name": client_name,
        "pid": pid,
        "min_version": OLDEST_PROTOCOL_VERSION,
        "max_version": PROTOCOL_VERSION,
        "session_token": session_token,
    }
    if client_nonce is not None:
        message["client_nonce"] = bytes(client_nonce)
    return message


# ------------------------------------------------------------------ shared-secret handshake
# (core/protocol/auth.h) Both sides pick a fresh random nonce and prove they know the secret
# with an HMAC-SHA256 over both nonces; the secret itself never travels.
#
#   client -> hello        {..., client_nonce}
#   daemon -> challenge    {server_nonce, server_proof = HMAC(secret, "labhost-server" || cn || sn)}
#   client checks server_proof, then
#   client -> authenticate {client_proof = HMAC(secret, "labhost-client" || sn || cn)}
#   daemon -> welcome      (or error auth_failed, after a delay, and the connection closes)

NONCE_SIZE = 32


def server_proof(secret, client_nonce, server_nonce):
    """What the daemon sends to prove it knows `secret` (bytes)."""
    return hmac.new(secret, b"labhost-server" + bytes(client_nonce) + bytes(server_nonce),
                    hashlib.sha256).digest()


def client_proof(secret, server_nonce, client_nonce):
    """What the client sends to prove it knows `secret` (bytes)."""
    return hmac.new(secret, b"labhost-client" + bytes(server_nonce) + bytes(client_nonce),
                    hashlib.sha256).digest()


def proofs_equal(a, b):
    """Compares two proofs in constant time."""
    return hmac.compare_digest(bytes(a), bytes(b))


def parse_challenge(value):
    return expect_map(value, "challenge", {"server_nonce": bytes, "server_proof": bytes})


def authenticate(proof):
    return {"client_proof": bytes(proof)}


def call_prefix(service, method, oneway=False):
    """The constant start of a call message's encoding: map of 4 entries (5 for a oneway
    call), service, method and the "args" key. A call is prefix + encoded args list +
    "kwargs" key + encoded kwargs map, + ONEWAY_ENTRY for a oneway call (the daemon then sends
    no result, only an error if the call fails)."""
    out = bytearray(codec.encode({"service": service, "method": method, "args": None})[:-1])
    out[1:5] = struct.pack("<I", 5 if oneway else 4)
    return bytes(out)


KWARGS_KEY = struct.pack("<I", 6) + b"kwargs"
EMPTY_MAP = bytes([codec.MAP, 0, 0, 0, 0])
ONEWAY_ENTRY = struct.pack("<I", 6) + b"oneway" + bytes([codec.BOOL, 1])


def encode_call(out, prefix, args, kwargs, oneway=False):
    """Appends a call message to the bytearray `out` (after its header's room): `prefix` from
    call_prefix (with the same `oneway`), then args, kwargs and the oneway entry. Returns the
    frame's parts, as codec.encode_into."""
    out += prefix
    e = codec.Encoder(out)
    e.sequence(args, 1)
    e.out += KWARGS_KEY
    if kwargs:
        e.mapping(kwargs, 1)
    else:
        e.out += EMPTY_MAP
    if oneway:
        e.out += ONEWAY_ENTRY
    return e.finish()


# --------------------------------------------------------------------------- events


def require_events(version, topic):
    """Raises UnsupportedVersionError when a session of protocol `version` cannot subscribe."""
    if version < 2:
        raise UnsupportedVersionError(
            "the daemon speaks protocol version %d: no events (subscribe to %s)" % (version, topic))


def subscribe(service, topic, queue, max_rate):
    """The subscribe message. `queue`: events the daemon keeps for this subscriber while it
    cannot take them (1 to 1024); `max_rate`: at most this many events a second, 0 for no
    limit."""
    if isinstance(queue, bool) or not isinstance(queue, int):
        raise TypeError("queue: expected an int, got %s" % type(queue).__name__)
    if isinstance(max_rate, bool) or not isinstance(max_rate, (int, float)):
        raise TypeError("max_rate: expected a number, got %s" % type(max_rate).__name__)
    return {"service": service, "topic": topic, "queue": queue, "max_rate": float(max_rate)}


def unsubscribe(subscription):
    return {"subscription": subscription}


def parse_subscription(value):
    """The subscribe reply: {subscription, service, topic, type, queue, max_rate}."""
    report = expect_map(value, "subscription", {"subscription": int})
    if not 0 < report["subscription"] <= 0xFFFFFFFF:
        raise BadMessageError("subscription.subscription: expected 1 to 2^32 - 1")
    return report


def parse_event(value):
    """An Event from an event frame's payload."""
    event = expect_map(value, "event", {"subscription": int})
    if "value" not in event:
        raise BadMessageError("event.value: expected a value")
    seq, dropped, time = event.get("seq", 0), event.get("dropped", 0), event.get("time", 0.0)
    return Event(event["subscription"], seq if isinstance(seq, int) else 0,
                 dropped if isinstance(dropped, int) else 0,
                 float(time) if isinstance(time, (int, float)) else 0.0, event["value"])


def expect_map(value, message, keys):
    """Checks that a reply is a map with `keys` (name -> type or tuple of types)."""
    if not isinstance(value, dict):
        raise BadMessageError("%s: expected a map" % message)
    for key, types in keys.items():
        if key not in value:
            raise BadMessageError("%s.%s: expected a value" % (message, key))
        if not isinstance(value[key], types) or (types is int and isinstance(value[key], bool)):
            raise BadMessageError("%s.%s: expected %s" % (message, key, getattr(types, "__name__", types)))
    return value


def parse_welcome(value):
    welcome = expect_map(value, "welcome", {"version": int, "session_token": str, "daemon": str})
    if not OLDEST_PROTOCOL_VERSION <= welcome["version"] <= PROTOCOL_VERSION:
        raise UnsupportedVersionError("the daemon chose protocol version %d; this client speaks "
                                      "%d to %d" % (welcome["version"], OLDEST_PROTOCOL_VERSION,
                                                    PROTOCOL_VERSION))
    return welcome


class Handshake:
    """The client's side of opening (or resuming) a session, without I/O: the hello, and when
    the daemon requires a secret its challenge, checked before the client's proof goes out.

        handshake = Handshake(client_name, token, secret, "HOST:PORT")
        send(handshake.hello_frame())
        while handshake.welcome is None:
            reply = handshake.answer(*receive())   # (type, decoded payload) of the next frame
            if reply:
                send(reply)

    answer() raises the daemon's error, AuthFailedError, or BadMessageError for a reply of
    another type. `secret`: bytes or None."""

    def __init__(self, client_name, token, secret, where):
        self.secret = secret
        self.where = where
        self.client_nonce = os.urandom(NONCE_SIZE) if secret else None
        self.hello = hello(client_name, os.getpid(), token, self.client_nonce)
        self.challenged = False
        self.welcome = None

    def hello_frame(self):
        return frame_bytes(HELLO, 1, self.hello)

    def answer(self, message_type, value):
        """The frame to send next (authenticate), or None once the welcome came."""
        if message_type == CHALLENGE and not self.challenged:
            # The daemon requires the secret: check its proof first (an impostor learns
            # nothing from us), then give ours.
            self.challenged = True
            challenge = parse_challenge(value)
            secret = self.secret
            if not secret:
                raise AuthFailedError(
                    "daemon at %s requires a secret: pass secret=..., or set LABHOST_SECRET "
                    "or LABHOST_SECRET_FILE" % self.where)
            expected = server_proof(secret, self.client_nonce, challenge["server_nonce"])
            if not proofs_equal(challenge["server_proof"], expected):
                # Either our secret differs from the daemon's, or this is not the daemon
                # meant: the two cannot be told apart, and in neither case may our proof go
                # out.
                raise AuthFailedError(
                    "the daemon could not prove it knows the secret: the secret given "
                    "differs from the daemon's auth.secret_file, or %s is not the daemon "
                    "meant" % self.where)
            proof = client_proof(secret, challenge["server_nonce"], self.client_nonce)
            return frame_bytes(AUTHENTICATE, 2, authenticate(proof))
        if message_type == ERROR:
            raise error_from(value)
        if message_type != WELCOME:
            raise BadMessageError("expected welcome, got %s" % MESSAGE_NAMES[message_type])
        self.welcome = parse_welcome(value)
        return None


def error_from(value):
    """The exception a daemon's error payload stands for."""
    if not isinstance(value, dict) or not isinstance(value.get("code"), int):
        return BadMessageError("error: expected a map with an int64 code")
    message = value.get("message", "")
    name = value.get("name")
    return make_error(value["code"], message if isinstance(message, str) else str(message),
                      name if isinstance(name, str) else None)
