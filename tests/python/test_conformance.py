"""The conformance vectors of tests/vectors (the same files the C++ tests read): values and
their bytes, frame headers, addresses, error codes and names, secret files and the default
limits, checked against the Python client."""

import inspect
import json
import math
import os
import struct

import numpy as np
import pytest

import labhost
import labhost.aio
from labhost import address, codec, errors, protocol

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "vectors")


def load(name):
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


def cases(name, key):
    """pytest parameters of one list of a vector file, each named by its "name" or "text"."""
    items = load(name)[key]
    return [pytest.param(item, id=str(item.get("name", item.get("text", i))) or "empty")
            for i, item in enumerate(items)]


# Every typed error class of the client, by its stable name.
ERROR_CLASSES = {cls.name: cls for cls in (getattr(errors, n) for n in errors.__all__)
                 if isinstance(cls, type) and issubclass(cls, errors.LabhostError)
                 and cls is not errors.LabhostError}


def error_named(name):
    assert name in ERROR_CLASSES, "no error class named %s" % name
    return ERROR_CLASSES[name]


# ------------------------------------------------------------------ values.json


def float_of(spelled):
    if isinstance(spelled, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0": -0.0}[spelled]
    return float(spelled)


def python_value(v):
    """The Python value a vector's one-key object stands for (what encode takes)."""
    (kind, body), = v.items()
    if kind == "null":
        return None
    if kind in ("bool", "int", "string"):
        return body
    if kind == "float":
        return float_of(body)
    if kind == "bytes":
        return bytes.fromhex(body)
    if kind == "list":
        return [python_value(e) for e in body]
    if kind == "map":
        return {key: python_value(e) for key, e in body}
    if kind == "array":
        return np.array(array_elements(body), dtype=np.dtype(body["type"]).newbyteorder("<")) \
            .reshape(body.get("shape", [-1]))
    raise AssertionError("unknown kind %s" % kind)


def array_elements(body):
    """A vector array's elements as Python numbers (complex ones are [real, imaginary])."""
    if body["type"].startswith("complex"):
        return [complex(*e) for e in body["elements"]]
    return body["elements"]


def assert_same(got, v, where="value"):
    """`got` (decoded) is exactly the vector value `v`: same type, floats bit for bit, maps
    in order, arrays of the right dtype and elements."""
    (kind, body), = v.items()
    if kind == "null":
        assert got is None, where
    elif kind == "bool":
        assert got is body, where
    elif kind == "int":
        assert type(got) is int and got == body, where
    elif kind == "float":
        assert type(got) is float, where
        assert struct.pack("<d", got) == struct.pack("<d", float_of(body)), where
    elif kind == "string":
        assert type(got) is str and got == body, where
    elif kind == "bytes":
        assert type(got) is bytes and got == bytes.fromhex(body), where
    elif kind == "list":
        assert type(got) is list and len(got) == len(body), where
        for i, (g, e) in enumerate(zip(got, body)):
            assert_same(g, e, "%s[%d]" % (where, i))
    elif kind == "map":
        assert type(got) is dict and list(got) == [key for key, _ in body], where
        for key, e in body:
            assert_same(got[key], e, "%s[%r]" % (where, key))
    elif kind == "array":
        assert isinstance(got, np.ndarray), where
        assert got.dtype == np.dtype(body["type"]), where
        assert list(got.shape) == body.get("shape", [len(body["elements"])]), where
        assert got.reshape(-1).tolist() == array_elements(body), where
    else:
        raise AssertionError("unknown kind %s" % kind)


@pytest.mark.parametrize("case", cases("values.json", "values"))
def test_values_encode_to_their_bytes_and_decode_back(case):
    data = codec.encode(python_value(case["value"]))
    assert bytes(data).hex() == case["hex"]
    assert_same(codec.decode(bytes.fromhex(case["hex"])), case["value"])


@pytest.mark.parametrize("case", cases("values.json", "values"))
def test_values_decode_without_numpy_too(case):
    """The memoryview and array.array forms of decode give the same numbers."""
    data = bytes.fromhex(case["hex"])
    for arrays in ("memoryview", "array"):
        got = codec.decode(data, arrays=arrays)
        expected = codec.decode(data)
        assert plain(got, flat=arrays == "array") == plain(expected, flat=arrays == "array")


def plain(v, flat):
    """Lists of numbers for the arrays in a decoded value, flat or nested by their shape."""
    if isinstance(v, np.ndarray):
        return v.reshape(-1).tolist() if flat or 0 in v.shape else v.tolist()
    if isinstance(v, memoryview):
        return v.tolist()
    if hasattr(v, "typecode"):  # array.array
        return v.tolist()
    if isinstance(v, list):
        return [plain(e, flat) for e in v]
    if isinstance(v, dict):
        return {k: plain(e, flat) for k, e in v.items()}
    return v


# Status names of the C++ decoder (decode_status) and the words of its message (the Python
# decoder's messages are the C++ decoder's: decode_status_text).
STATUS_WORDS = {
    "truncated": "truncated value", "bad_tag": "unknown value tag",
    "bad_bool": "bool byte is neither 0 nor 1", "bad_utf8": "string is not valid UTF-8",
    "bad_element_type": "unknown typed-array element type",
    "bad_shape": "shaped array needs 2 to 32 dimensions", "too_deep": "value nested too deeply",
    "too_many_items": "value has too many entries", "trailing_bytes": "bytes left after the value",
}


@pytest.mark.parametrize("case", cases("values.json", "malformed"))
def test_malformed_values_are_refused_with_the_offset(case):
    for arrays in ("numpy", "memoryview", "array"):
        with pytest.raises(errors.LabhostError) as e:
            codec.decode(bytes.fromhex(case["hex"]), arrays=arrays)
        assert type(e.value) is error_named(case["error"])
        assert e.value.name == case["error"]
        assert e.value.message == "payload: %s at byte %d" % (STATUS_WORDS[case["status"]],
                                                              case["offset"]), e.value.message


# ------------------------------------------------------------------ frames.json

TYPES = {name: number for number, name in protocol.MESSAGE_NAMES.items()}


@pytest.mark.parametrize("case", cases("frames.json", "headers"))
def test_frame_headers_are_written_exactly(case):
    out = bytearray(protocol.HEADER_SIZE)
    protocol.pack_header(out, TYPES[case["type"]], case["request_id"], case["payload_size"])
    assert out.hex() == case["hex"]
    message_type, _, request_id, size = protocol.parse_header(bytes(out))
    assert (message_type, request_id, size) == (TYPES[case["type"]], case["request_id"], case["payload_size"])


@pytest.mark.parametrize("case", cases("frames.json", "bad_headers"))
def test_bad_frame_headers_are_refused(case):
    header = bytes.fromhex(case["hex"])
    with pytest.raises(errors.LabhostError) as e:
        protocol.parse_header(header, case.get("max_payload", protocol.DEFAULT_MAX_PAYLOAD))
    assert type(e.value) is error_named(case["error"]) and e.value.name == case["error"]


# ------------------------------------------------------------------ addresses.json


@pytest.mark.parametrize("case", cases("addresses.json", "addresses"))
def test_addresses(case):
    if "error" in case:
        with pytest.raises(errors.LabhostError) as e:
            address.parse_address(case["text"])
        assert type(e.value) is error_named(case["error"]) and e.value.name == case["error"]
        return
    a = address.parse_address(case["text"])
    assert (a.host, a.port, a.service) == (case["host"], case["port"], case["service"])
    assert str(a) == case["canonical"]
    assert address.parse_address(str(a)) == a  # the canonical form reads back the same


# ------------------------------------------------------------------ errors.json


def test_the_client_knows_exactly_the_typed_errors():
    expected = {e["code"]: e["name"] for e in load("errors.json")["errors"]}
    assert {cls.code: name for name, cls in ERROR_CLASSES.items()} == expected
    for code, name in expected.items():
        cls = errors.error_class(code)
        assert (cls.code, cls.name) == (code, name)
        made = errors.make_error(code, "message")
        assert type(made) is cls and (made.code, made.name) == (code, name)
        assert getattr(labhost, cls.__name__) is cls  # exported by the package
    unknown = max(expected) + 1
    assert errors.error_class(unknown) is errors.LabhostError


# ------------------------------------------------------------------ secrets.json


@pytest.mark.parametrize("case", cases("secrets.json", "secrets"))
def test_secret_files(case, tmp_path, monkeypatch):
    path = tmp_path / "labhost.secret"
    path.write_bytes(case["file"].encode("utf-8"))
    monkeypatch.setenv("LABHOST_SECRET_FILE", str(path))
    if case.get("error"):
        with pytest.raises(labhost.AuthFailedError, match="holds no secret"):
            labhost.secret_from_environment()
    else:
        assert labhost.secret_from_environment() == case["secret"].encode("utf-8")


# ------------------------------------------------------------------ limits.json


def test_limits():
    limits = load("limits.json")
    assert protocol.FRAMING_VERSION == limits["framing_version"]
    assert protocol.OLDEST_PROTOCOL_VERSION == limits["oldest_protocol_version"]
    assert protocol.PROTOCOL_VERSION == limits["protocol_version"]
    hello = protocol.hello("limits@test", 1)
    assert (hello["min_version"], hello["max_version"]) == (limits["oldest_protocol_version"],
                                                            limits["protocol_version"])
    assert protocol.HEADER_SIZE == limits["header_size"]
    assert protocol.NONCE_SIZE == limits["nonce_size"]
    assert protocol.DEFAULT_MAX_PAYLOAD == limits["max_frame_bytes"]
    assert codec.MAX_DEPTH == limits["max_value_depth"]
    assert codec.MAX_ITEMS == limits["max_value_items"]
    parameters = inspect.signature(labhost.Connection).parameters
    assert parameters["busy_poll_us"].default == limits["busy_poll_us"]
    assert parameters["max_payload"].default == limits["max_frame_bytes"]
    parameters = inspect.signature(labhost.aio.AsyncConnection).parameters
    assert parameters["max_payload"].default == limits["max_frame_bytes"]
    # pre_handshake_max_payload is the daemon's limit before a hello: not the client's.
