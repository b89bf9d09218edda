"""The codec, frames, errors and addresses, without a daemon: exact bytes as in
core/include/labhost/value_codec.h and core/protocol/frame.h, and hostile input refused."""

import array
import struct

import numpy as np
import pytest

import labhost
from labhost import codec, protocol
from labhost.errors import make_error


@pytest.mark.parametrize("value, hex_bytes", [
    (None, "00"),
    (False, "0100"),
    (True, "0101"),
    (1, "020100000000000000"),
    (-2, "02feffffffffffffff"),
    (2 ** 63 - 1, "02ffffffffffffff7f"),
    (-2 ** 63, "020000000000000080"),
    (1.5, "03000000000000f83f"),
    ("hé", "040300000068c3a9"),
    (b"\x00\xff", "050200000000ff"),
    ([1, None], "0602000000020100000000000000" + "00"),
    ({"a": True}, "07010000000100000061" + "0101"),
    ([], "0600000000"),
    ({}, "0700000000"),
])
def test_plain_values_encode_to_the_documented_bytes(value, hex_bytes):
    assert codec.encode(value).hex() == hex_bytes
    assert codec.decode(bytes.fromhex(hex_bytes)) == value


def test_tuples_and_bytearrays_travel_as_lists_and_bytes():
    assert codec.decode(codec.encode((1, (2, 3)))) == [1, [2, 3]]
    assert codec.decode(codec.encode(bytearray(b"ab"))) == b"ab"


def test_map_order_is_kept():
    value = {"z": 1, "a": 2, "m": 3}
    assert list(codec.decode(codec.encode(value))) == ["z", "a", "m"]


def test_typed_arrays_encode_with_element_type_count_and_raw_data():
    data = codec.encode(np.array([1, 2], dtype=np.uint16))
    assert data.hex() == "0809" + "02000000" + "0100" + "0200"
    assert codec.encode(array.array("d", [1.0])).hex() == "0801" + "01000000" + "000000000000f03f"
    assert len(codec.ELEMENT_TYPES) == 13  # every element type of protocol version 2
    for code, (name, size, typecode, dtype) in codec.ELEMENT_TYPES.items():
        a = (np.arange(5) % 2).astype(dtype)
        numbers = a.tolist()
        encoded = codec.encode(a)
        assert encoded[:6] == struct.pack("<BBI", 8, code, 5), name
        assert encoded[6:] == a.astype(dtype).tobytes() and len(encoded) == 6 + 5 * size
        back = codec.decode(encoded)
        assert back.dtype == np.dtype(dtype) and back.tolist() == numbers
        mv = codec.decode(encoded, arrays="memoryview")
        arr = codec.decode(encoded, arrays="array")
        if typecode is None:  # complex: lists of Python complex without numpy
            assert mv == arr == numbers and all(type(x) is complex for x in mv)
        elif typecode == "?":  # bool: a memoryview of "?", a list in "array" mode
            assert mv.format == "?" and mv.tolist() == numbers and arr == numbers
        else:
            assert mv.format == typecode and mv.tolist() == numbers
            assert arr.typecode == typecode and arr.tolist() == numbers


def test_arrays_of_two_or_more_dimensions_keep_their_shape_in_c_order_and_little_endian():
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    data = codec.encode(a)
    assert data.hex() == "0904" + "02" + "02000000" + "03000000" + np.arange(6, dtype="<i4").tobytes().hex()
    back = codec.decode(data)
    assert back.shape == (2, 3) and back.dtype == np.int32 and back.tolist() == a.tolist()
    fortran = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert codec.decode(codec.encode(fortran)).tolist() == [[0, 1, 2], [3, 4, 5]]
    transposed = np.arange(24, dtype=np.uint8).reshape(2, 3, 4).T  # not C-contiguous
    assert np.array_equal(codec.decode(codec.encode(transposed)), transposed)
    strided = np.arange(10, dtype=np.int16)[::2]
    assert codec.decode(codec.encode(strided)).tolist() == [0, 2, 4, 6, 8]
    assert codec.encode(np.arange(3)[None, :])[:3] == bytes([9, 3, 2])  # (1, 3): shaped
    assert codec.encode(np.float64(2.5)) == codec.encode(np.array(2.5)) == codec.encode(2.5)  # 0-d
    empty = codec.decode(codec.encode(np.zeros((3, 0, 2), dtype=np.uint16)))
    assert empty.shape == (3, 0, 2) and empty.dtype == np.uint16


def test_shaped_arrays_without_numpy_are_memoryviews_of_their_shape():
    data = codec.encode(np.arange(6, dtype=np.uint16).reshape(2, 3))
    view = codec.decode(data, arrays="memoryview")
    assert view.format == "H" and view.shape == (2, 3) and view[1, 2] == 5
    assert view.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert view.cast("B").cast("H").tolist() == [0, 1, 2, 3, 4, 5]  # the flat view
    assert codec.encode(view) == data  # a shaped memoryview is sent with its shape
    flat = codec.decode(data, arrays="array")
    assert flat.typecode == "H" and flat.tolist() == [0, 1, 2, 3, 4, 5]  # "array": flat
    empty = codec.decode(codec.encode(np.zeros((2, 0), dtype=np.uint16)), arrays="memoryview")
    assert empty.format == "H" and len(empty) == 0  # memoryview takes no 0 in a shape: flat
    flags = codec.decode(codec.encode(np.array([[True], [False]])), arrays="memoryview")
    assert flags.format == "?" and flags.tolist() == [[True], [False]]
    numbers = codec.decode(codec.encode(np.array([[1 + 2j, 3], [4, -5j]], dtype=np.complex64)),
                           arrays="memoryview")
    assert numbers == [[1 + 2j, 3 + 0j], [4 + 0j, -5j]]  # complex: nested lists


def test_bool_elements_must_be_0_or_1():
    assert codec.decode(bytes.fromhex("080d020000000100")).tolist() == [True, False]
    for arrays in ("numpy", "memoryview", "array"):
        with pytest.raises(labhost.BadFrameError, match="bool byte is neither 0 nor 1 at byte 13"):
            codec.decode(bytes.fromhex("090d02020000000200000001000201"), arrays=arrays)


def test_numpy_scalars_travel_as_python_numbers():
    assert codec.decode(codec.encode(np.float32(1.5))) == 1.5
    assert codec.decode(codec.encode(np.int16(-3))) == -3
    assert codec.decode(codec.encode(np.bool_(True))) is True


def test_received_arrays_share_the_buffer():
    payload = bytearray(codec.encode(np.arange(4, dtype=np.float64)))
    a = codec.decode(payload)
    payload[6:14] = struct.pack("<d", 42.0)  # the first element, in place
    assert a[0] == 42.0


def test_large_buffers_are_kept_out_of_line():
    big = np.zeros(1 << 16, dtype=np.float64)
    parts = codec.encode_into(bytearray(), [b"x", big])
    assert any(isinstance(p, memoryview) and p.nbytes == big.nbytes for p in parts)
    assert np.array_equal(codec.decode(b"".join(parts))[1], big)


@pytest.mark.parametrize("value, error, words", [
    (2 ** 63, OverflowError, "int64"),
    (-2 ** 63 - 1, OverflowError, "int64"),
    (np.zeros(2, dtype=np.clongdouble), TypeError, "complex256"),
    (np.zeros(2, dtype=np.float16), TypeError, "float16"),
    (memoryview(bytes(1)).cast("B", (1,) * 33), ValueError, "at most 32"),
    (array.array("u", "ab"), TypeError, "'u'"),
    ({1: 2}, TypeError, "keys must be str"),
    (object(), TypeError, "object"),
    ({1, 2}, TypeError, "set"),
])
def test_values_that_cannot_travel_are_refused_by_name(value, error, words):
    with pytest.raises(error) as e:
        codec.encode(value)
    assert words in str(e.value)


def test_nesting_is_limited_both_ways():
    deep = []
    for _ in range(70):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        codec.encode(deep)
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        codec.encode(loop)
    # As the C++ decoder: a list or map at depth 64 (the 65th level) is refused.
    level = bytes([codec.LIST, 1, 0, 0, 0])
    with pytest.raises(labhost.BadFrameError, match="nested too deeply at byte 320"):
        codec.decode(level * 65 + bytes([codec.NULL]))
    assert codec.decode(level * 64 + bytes([codec.NULL])) is not None
    nested = None
    for _ in range(64):
        nested = [nested]
    assert codec.decode(codec.encode(nested)) == nested
    with pytest.raises(ValueError):
        codec.encode([nested])


@pytest.mark.parametrize("hex_bytes, words", [
    ("", "truncated value at byte 0"),
    ("0a", "unknown value tag at byte 0"),
    ("09", "truncated value at byte 1"),
    ("090a", "truncated value at byte 2"),
    ("090a00", "shaped array needs 2 to 32 dimensions at byte 2"),
    ("090902ffffffffffffffff", "truncated value at byte 11"),  # 2^64 elements said, none given
    ("090902ffffffff00000000", None),                       # (4294967295, 0): no elements
    ("0102", "bool byte is neither 0 nor 1 at byte 1"),
    ("0201", "truncated"),
    ("04ffffffff", "truncated"),                  # a 4 GiB string in 5 bytes
    ("05ffffff7f00", "truncated"),
    ("06ffffffff00", "truncated"),                # 4 billion entries, never allocated
    ("07ffffff0f" + "00" * 16, "truncated"),
    ("040200000061", "truncated"),               # 2 bytes said, 1 given
    ("0402000000c328", "not valid UTF-8"),
    ("0403000000eda080", "not valid UTF-8"),      # a surrogate
    ("0402000000c0af", "not valid UTF-8"),        # an overlong
    ("080e01000000", "unknown typed-array element type at byte 1"),
    ("080001000000", "unknown typed-array element type at byte 1"),
    ("0801ffffffff" + "00" * 8, "truncated"),
    ("0000", "bytes left after the value at byte 1"),
    ("0701000000050000006b6579", "truncated"),
])
def test_hostile_payloads_are_bad_frame_errors(hex_bytes, words):
    if words is None:  # hostile-looking, but well formed
        assert codec.decode(bytes.fromhex(hex_bytes)).size == 0
        return
    with pytest.raises(labhost.BadFrameError) as e:
        codec.decode(bytes.fromhex(hex_bytes))
    assert words in e.value.message


def test_item_count_is_limited():
    data = bytes([codec.LIST]) + struct.pack("<I", 10) + bytes(10)
    with pytest.raises(labhost.BadFrameError, match="too many entries"):
        codec.decode(data, max_items=5)
    assert codec.decode(data, max_items=10) == [None] * 10


def test_every_truncation_of_a_valid_payload_is_refused():
    value = {"a": [1, 2.5, "x", b"y", None, True, {"b": np.arange(3, dtype=np.int32)}],
             "c": np.arange(6, dtype=np.complex64).reshape(3, 2), "f": np.eye(2, dtype=bool)}
    data = codec.encode(value)
    for cut in range(len(data)):
        with pytest.raises(labhost.BadFrameError):
            codec.decode(data[:cut])


def test_frame_header_layout():
    frame = protocol.frame_bytes(protocol.CALL, 0x01020304, None)
    assert frame.hex() == "4c485354" + "01" + "03" + "0000" + "04030201" + "01000000" + "00"
    assert protocol.parse_header(frame[:16]) == (protocol.CALL, 0, 0x01020304, 1)


@pytest.mark.parametrize("header, error, words", [
    (b"XHST" + bytes(12), labhost.BadFrameError, "bad magic"),
    (b"LHST\x02\x04" + bytes(10), labhost.UnsupportedVersionError, "frame version 2"),
    (b"LHST\x01\x13" + bytes(10), labhost.BadFrameError, "unknown message type 19"),
    (b"LHST\x01\x04" + bytes(6) + struct.pack("<I", (64 << 20) + 1), labhost.BadFrameError,
     "exceeds the maximum"),
])
def test_bad_headers_are_refused_before_any_allocation(header, error, words):
    with pytest.raises(error, match=words):
        protocol.parse_header(header)


def test_call_prefix_matches_a_whole_call_message():
    prefix = protocol.call_prefix("laser", "set_wavelength")
    whole = codec.encode({"service": "laser", "method": "set_wavelength", "args": [1.5], "kwargs": {}})
    assert whole == prefix + codec.encode([1.5]) + protocol.KWARGS_KEY + protocol.EMPTY_MAP
    parts = protocol.encode_call(bytearray(), prefix, [1.5], {})
    assert b"".join(parts) == whole


def test_a_oneway_call_sends_oneway_true_last():
    prefix = protocol.call_prefix("echo", "record", oneway=True)
    parts = protocol.encode_call(bytearray(), prefix, [7], {"k": 1}, oneway=True)
    message = codec.decode(b"".join(parts))
    assert list(message.items()) == [("service", "echo"), ("method", "record"), ("args", [7]),
                                     ("kwargs", {"k": 1}), ("oneway", True)]


def test_hello_offers_protocol_versions_1_to_2_in_frames_of_version_1():
    hello = protocol.hello("me@here", 42)
    assert (hello["min_version"], hello["max_version"]) == (1, 2)
    assert protocol.frame_bytes(protocol.HELLO, 1, hello)[4] == 1
    with pytest.raises(labhost.UnsupportedVersionError, match="chose protocol version 3"):
        protocol.parse_welcome({"version": 3, "session_token": "t", "daemon": "d"})


def test_events_and_subscription_reports_parse():
    event = protocol.parse_event({"subscription": 3, "seq": 9, "dropped": 2, "time": 1.5, "value": [1]})
    assert event == labhost.Event(3, 9, 2, 1.5, [1]) and event.value == [1]
    with pytest.raises(labhost.BadMessageError, match="event.value"):
        protocol.parse_event({"subscription": 3, "seq": 9})
    with pytest.raises(labhost.BadMessageError, match="subscription.subscription"):
        protocol.parse_subscription({"subscription": 0})
    with pytest.raises(labhost.UnsupportedVersionError, match="protocol version 1: no events"):
        protocol.require_events(1, "frames")


def test_every_error_code_has_its_class():
    expected = {
        1: "BadFrameError", 2: "UnsupportedVersionError", 3: "NoSuchServiceError",
        4: "NoSuchMethodError", 5: "BadArgumentsError", 6: "DriverError",
        7: "ServiceUnavailableError", 8: "BusyError", 9: "LabhostTimeoutError",
        10: "ShuttingDownError", 11: "InternalError", 12: "BadMessageError", 20: "LockedError",
        21: "NotLockOwnerError", 22: "NotLockableError", 23: "LockedOutError",
        24: "NoSuchSessionError", 25: "NoSuchTopicError", 26: "NoSuchSubscriptionError",
        30: "AuthFailedError", 31: "NotAuthorisedError",
        32: "TlsRequiredError", 40: "NameTakenError", 41: "NoSuchNameError", 100: "ConnectionLostError",
        101: "BadAddressError",
    }
    for code, class_name in expected.items():
        cls = getattr(labhost, class_name)
        assert issubclass(cls, labhost.LabhostError)
        assert cls.code == code and labhost.error_class(code) is cls
        e = make_error(code, "why")
        assert type(e) is cls and e.message == "why" and str(e) == "%s: why" % cls.name
    unknown = make_error(77, "later", "future_error")
    assert type(unknown) is labhost.LabhostError and unknown.code == 77 and unknown.name == "future_error"
    assert issubclass(labhost.LabhostTimeoutError, TimeoutError)
    assert issubclass(labhost.ConnectionLostError, ConnectionError)


@pytest.mark.parametrize("text, host, port, service", [
    ("lab://127.0.0.1:7701/laser", "127.0.0.1", 7701, "laser"),
    ("lab://127.0.0.1:7701", "127.0.0.1", 7701, ""),
    ("localhost:1/x", "localhost", 1, "x"),
    ("lab://[::1]:65535/cam", "::1", 65535, "cam"),
])
def test_addresses_parse(text, host, port, service):
    a = labhost.parse_address(text)
    assert (a.host, a.port, a.service) == (host, port, service)
    assert labhost.parse_address(str(a)) == a


@pytest.mark.parametrize("text", [
    "lab://127.0.0.1", "lab://127.0.0.1:0/x", "lab://127.0.0.1:65536", "lab://h:7701/",
    "lab://h:7701/a/b", "lab://[::1/x", ":7701", "lab://h:77a1", "lab://h:７７０１",
])
def test_bad_addresses_are_bad_address_errors(text):
    with pytest.raises(labhost.BadAddressError):
        labhost.connect(text)


def test_random_corruptions_are_bad_frame_errors_or_values_never_crashes():
    import random
    rng = random.Random(1234)
    value = {"list": [1, -2.5, "text", b"raw", None, False, [{"deep": [[]]}]],
             "array": np.arange(7, dtype=np.uint16), "map": {"k": "v"}}
    data = codec.encode(value)
    for _ in range(3000):  # bounded: a fixed count of seeded mutations
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if rng.random() < 0.3:
            del mutated[rng.randrange(len(mutated)):]
        try:
            codec.decode(bytes(mutated))
        except labhost.BadFrameError:
            pass
