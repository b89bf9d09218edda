"""The client against a scripted fake daemon that answers with malformed frames: every
problem is a typed error, nothing is allocated from an untrusted length, nothing hangs."""

import threading
import time

import pytest

import labhost
from labhost import codec, protocol

from frames import CloseAfter, connection_to, frame, result


def test_a_reply_with_bad_magic_breaks_the_connection(fake):
    d = fake(lambda rid, req: frame(protocol.RESULT, rid, b"\x00", magic=b"HTTP"))
    with connection_to(d, reconnect=False) as c:
        with pytest.raises(labhost.BadFrameError, match="bad magic"):
            c.call("x", "y")
        with pytest.raises(labhost.BadFrameError):  # broken for good without reconnect
            c.call("x", "y")


def test_a_huge_payload_length_is_refused_before_allocating(fake):
    d = fake(lambda rid, req: frame(protocol.RESULT, rid, b"", size=0xFFFFFFF0))
    with connection_to(d, reconnect=False) as c:
        with pytest.raises(labhost.BadFrameError, match="4294967280 bytes exceeds the maximum of 67108864"):
            c.call("x", "y")


def test_another_version_in_a_reply_is_unsupported_version(fake):
    d = fake(lambda rid, req: frame(protocol.RESULT, rid, b"\x00", version=2))
    with connection_to(d, reconnect=False) as c:
        with pytest.raises(labhost.UnsupportedVersionError, match="frame version 2"):
            c.call("x", "y")


def test_a_payload_that_does_not_decode_fails_only_its_request(fake):
    def script(rid, req):
        if req["method"] == "garbage":
            return frame(protocol.RESULT, rid, b"\x0a")  # tags go up to 9 (shaped array)
        return result(rid, req["args"])

    with connection_to(fake(script)) as c:
        with pytest.raises(labhost.BadFrameError, match="payload: unknown value tag at byte 0"):
            c.call("x", "garbage")
        assert c.call("x", "fine", [1, 2]) == [1, 2]  # the stream stayed in step


def test_replies_for_unknown_request_ids_are_dropped(fake):
    d = fake(lambda rid, req: result(rid + 1000, "stray") + result(rid, "mine"))
    with connection_to(d) as c:
        assert c.call("x", "y") == "mine"
        assert c.call("x", "y") == "mine"


def test_a_connection_level_error_fails_the_requests_in_flight(fake):
    error = codec.encode({"code": 8, "name": "busy", "message": "too many requests"})
    d = fake(lambda rid, req: frame(protocol.ERROR, 0, error))
    with connection_to(d, reconnect=False) as c:
        with pytest.raises(labhost.BusyError, match="too many requests"):
            c.call("x", "y")


def test_an_unexpected_message_type_is_bad_message(fake):
    d = fake(lambda rid, req: frame(protocol.PONG, rid, b"\x00"))
    with connection_to(d) as c:
        with pytest.raises(labhost.BadMessageError, match="expected result, got pong"):
            c.call("x", "y")


def test_an_error_payload_of_the_wrong_shape_is_bad_message(fake):
    d = fake(lambda rid, req: frame(protocol.ERROR, rid, codec.encode(["not", "a", "map"])))
    with connection_to(d) as c:
        with pytest.raises(labhost.BadMessageError):
            c.call("x", "y")


def test_an_unknown_error_code_keeps_its_code_and_name(fake):
    error = codec.encode({"code": 77, "name": "future_error", "message": "from a newer daemon"})
    d = fake(lambda rid, req: frame(protocol.ERROR, rid, error))
    with connection_to(d) as c:
        with pytest.raises(labhost.LabhostError) as e:
            c.call("x", "y")
        assert type(e.value) is labhost.LabhostError
        assert (e.value.code, e.value.name, e.value.message) == (77, "future_error", "from a newer daemon")


def test_a_daemon_that_closes_mid_reply_is_connection_lost(fake):
    d = fake(lambda rid, req: CloseAfter(frame(protocol.RESULT, rid, b"", size=100)[:20]))
    with connection_to(d, reconnect=False) as c:
        with pytest.raises(labhost.ConnectionLostError, match="closed the connection"):
            c.call("x", "y")
    big = codec.encode(bytes(1 << 20))  # the same inside a large payload (read in place)
    d = fake(lambda rid, req: CloseAfter(frame(protocol.RESULT, rid, big)[:5000]))
    with connection_to(d) as c:
        with pytest.raises(labhost.ConnectionLostError, match="closed the connection"):
            c.call("x", "y")


def test_a_reply_that_never_comes_times_out_without_hanging(fake):
    gate = threading.Event()

    def script(rid, req):
        gate.wait(30)
        return result(rid, "late")

    with connection_to(fake(script), timeout=0.2) as c:
        with pytest.raises(labhost.LabhostTimeoutError):
            c.call("x", "y")
        gate.set()
        assert c.call("x", "y", timeout=30) == "late"  # the first late reply was dropped


def test_a_challenge_to_a_client_without_a_secret_is_auth_failed(fake):
    challenge = codec.encode({"server_nonce": bytes(16), "server_proof": bytes(32)})
    d = fake(None, answer_hello=lambda rid: frame(protocol.CHALLENGE, rid, challenge))
    with pytest.raises(labhost.AuthFailedError, match="requires a secret: pass secret="):
        connection_to(d)


def test_a_malformed_challenge_is_bad_message(fake):
    challenge = codec.encode({"server_nonce": "text, not bytes", "server_proof": bytes(32)})
    d = fake(None, answer_hello=lambda rid: frame(protocol.CHALLENGE, rid, challenge))
    with pytest.raises(labhost.BadMessageError, match="challenge.server_nonce"):
        connection_to(d, secret="s3cret")


def test_a_daemon_that_never_finishes_the_handshake_times_out(fake):
    gate = threading.Event()
    d = fake(None, answer_hello=lambda rid: gate.wait(30) and b"")
    start = time.monotonic()
    with pytest.raises(labhost.ConnectionLostError, match="no welcome .* within 0.3 s"):
        connection_to(d, connect_timeout=0.3)
    assert time.monotonic() - start < 10
    gate.set()


def test_a_refused_hello_raises_the_daemons_error(fake):
    error = codec.encode({"code": 2, "name": "unsupported_version", "message": "speaks 7 only"})
    d = fake(None, answer_hello=lambda rid: frame(protocol.ERROR, rid, error))
    with pytest.raises(labhost.UnsupportedVersionError, match="speaks 7 only"):
        connection_to(d)
    d = fake(None, answer_hello=lambda rid: frame(protocol.RESULT, rid, b"\x00"))
    with pytest.raises(labhost.BadMessageError, match="expected welcome, got result"):
        connection_to(d)
    d = fake(None, answer_hello=lambda rid: frame(protocol.WELCOME, rid, codec.encode({"version": 1})))
    with pytest.raises(labhost.BadMessageError, match="welcome.session_token"):
        connection_to(d)
