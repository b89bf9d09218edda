"""Frames and messages of labhost's wire protocol, version 1 (core/protocol/frame.h,
messages.h). No I/O here.

A frame is a 16-byte header followed by a payload of one encoded value::

    offset size
    0      4    magic "LHST"
    4      1    version (1)
    5      1    message type
    6      2    flags (u16, sent as 0, ignored)
    8      4    request id (u32; 0 on a daemon's error = a connection-level error)
    12     4    payload length (u32), checked against a maximum before allocating

All integers are little-endian.
"""

import hashlib
import hmac
import struct

from . import codec
from .errors import BadFrameError, BadMessageError, UnsupportedVersionError, make_error

MAGIC = b"LHST"
VERSION = 1
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

MESSAGE_NAMES = {
    HELLO: "hello", WELCOME: "welcome", CALL: "call", RESULT: "result", ERROR: "error",
    DESCRIBE: "describe", DESCRIPTION: "description", PING: "ping", PONG: "pong",
    GOODBYE: "goodbye", LOCK: "lock", UNLOCK: "unlock", LOCK_STATUS: "lock_status",
    CHALLENGE: "challenge", AUTHENTICATE: "authenticate",
}

_header = struct.Struct("<4sBBHII")


def pack_header(out, message_type, request_id, payload_size):
    """Writes a header into the first 16 bytes of the bytearray `out`."""
    _header.pack_into(out, 0, MAGIC, VERSION, message_type, 0, request_id, payload_size)


def parse_header(data, max_payload=DEFAULT_MAX_PAYLOAD):
    """(type, flags, request_id, payload_size) of a 16-byte header, checked: magic, version,
    known type, payload_size <= max_payload. Raises BadFrameError or UnsupportedVersionError.
    """
    magic, version, message_type, flags, request_id, size = _header.unpack_from(data, 0)
    if magic != MAGIC:
        raise BadFrameError("bad magic: not a labhost frame")
    if version != VERSION:
        raise UnsupportedVersionError(
            "frame version %d, this peer speaks version %d" % (version, VERSION))
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


def frame_bytes(message_type, request_id, payload):
    """A complete frame as one bytes object."""
    parts, _ = encode_frame(message_type, request_id, payload)
    return b"".join(parts)


# --------------------------------------------------------------------------- messages


def hello(client_name, pid, session_token="", client_nonce=None):
    """The hello message; `client_nonce` (NONCE_SIZE random bytes) only when the client has a
    secret: a daemon that requires one answers with a challenge, else with an auth_failed
    error."""
    message = {
        "client_name": client_name,
        "pid": pid,
        "min_version": VERSION,
        "max_version": VERSION,
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


def call_prefix(service, method):
    """The constant start of a call message's encoding: map of 4 entries, service, method and
    the "args" key. A call is prefix + encoded args list + "kwargs" key + encoded kwargs map.
    """
    out = bytearray(codec.encode({"service": service, "method": method, "args": None})[:-1])
    out[1:5] = struct.pack("<I", 4)
    return bytes(out)


KWARGS_KEY = struct.pack("<I", 6) + b"kwargs"
EMPTY_MAP = bytes([codec.MAP, 0, 0, 0, 0])


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
    return expect_map(value, "welcome", {"version": int, "session_token": str, "daemon": str})


def error_from(value):
    """The exception a daemon's error payload stands for."""
    if not isinstance(value, dict) or not isinstance(value.get("code"), int):
        return BadMessageError("error: expected a map with an int64 code")
    message = value.get("message", "")
    name = value.get("name")
    return make_error(value["code"], message if isinstance(message, str) else str(message),
                      name if isinstance(name, str) else None)
