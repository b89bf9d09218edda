"""Shaped arrays and the element types of protocol version 2 (complex64, complex128, bool),
both ways through a real daemon (test_echo: echo, frame, shape_of, conjugate, negate), and
what a client that speaks only version 1 gets from the same daemon."""

import socket

import numpy as np
import pytest

import labhost
from frames import read_frame
from labhost import protocol

DTYPES = ["float64", "float32", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
          "uint8", "complex64", "complex128", "bool"]


@pytest.fixture(scope="module")
def echo(sim_daemon):
    with labhost.connect(sim_daemon.address("echo"), timeout=60, client_name="pytest@shapes") as proxy:
        yield proxy


def sample(dtype, shape):
    """An array of `dtype` and `shape` holding each type's extremes where it has them."""
    count = int(np.prod(shape))
    if dtype == "bool":
        return (np.arange(count) % 3 == 0).reshape(shape)
    if dtype.startswith("complex"):
        parts = np.arange(count, dtype=np.float64)
        return (parts - 1j * parts / 2).astype(dtype).reshape(shape)
    info = np.iinfo(dtype) if dtype[0] in "iu" else np.finfo(dtype)
    values = np.resize(np.array([0, 1, info.max, info.min, 7], dtype=dtype), count)
    return values.reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 1, 4), (1,) * 32, (3, 0)],
                         ids=["flat", "2-d", "3-d", "32-d", "empty"])
def test_every_element_type_and_shape_comes_back_as_sent(echo, dtype, shape):
    sent = sample(dtype, shape)
    back = echo.echo(sent)
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.dtype(dtype) and back.shape == sent.shape
    assert np.array_equal(back, sent)
    described = echo.shape_of(sent)
    assert described == {"shape": list(shape) if len(shape) > 1 else [], "dtype": dtype,
                         "count": sent.size}


def test_the_driver_sees_the_shape_of_non_contiguous_and_big_endian_arrays(echo):
    cube = np.arange(24, dtype=">f4").reshape(2, 3, 4)
    for sent in (cube, cube.transpose(2, 0, 1), cube[:, ::2, 1:3]):
        assert echo.shape_of(sent)["shape"] == list(sent.shape)
        assert np.array_equal(echo.echo(sent), sent)


def test_a_shaped_frame_written_in_place(echo):
    frame = echo.frame(480, 640)
    assert frame.shape == (480, 640) and frame.dtype == np.uint16 and frame.flags.c_contiguous
    y = np.arange(480, dtype=np.int64)[:, None]
    x = np.arange(640, dtype=np.int64)[None, :]
    assert np.array_equal(frame, ((y * 640 + x) % 65536).astype(np.uint16))
    assert echo.frame(0, 5).shape == (0, 5)


def test_complex_and_bool_arrays_reach_the_driver(echo):
    values = np.array([1.5 + 0.25j, -2 - 3j, 0j])
    conjugated = echo.conjugate(values)
    assert conjugated.dtype == np.complex128 and np.array_equal(conjugated, np.conj(values))
    with pytest.raises(labhost.BadArgumentsError, match="expected array<complex128>, got array<complex64>"):
        echo.conjugate(values.astype(np.complex64))  # the driver takes complex128 only
    flags = np.array([[True, False, True], [False, False, True]])
    negated = echo.negate(flags)
    assert negated.dtype == np.bool_ and negated.shape == (2, 3)
    assert np.array_equal(negated, ~flags)
    with pytest.raises(labhost.BadArgumentsError, match="array<bool>"):
        echo.negate(np.zeros(3, dtype=np.uint8))


def test_shaped_arrays_inside_lists_and_maps(echo):
    value = {"frames": [np.ones((2, 2), np.uint8), np.zeros((3, 1, 2), np.int16)],
             "mask": np.eye(3, dtype=bool), "phase": np.full((2, 2), 1j, np.complex64)}
    back = echo.echo(value)
    assert [f.shape for f in back["frames"]] == [(2, 2), (3, 1, 2)]
    assert back["mask"].dtype == np.bool_ and np.array_equal(back["mask"], value["mask"])
    assert back["phase"].dtype == np.complex64 and np.array_equal(back["phase"], value["phase"])


def test_a_version_1_session_gets_frames_flat_and_no_new_element_types(sim_daemon, monkeypatch):
    """A client that offers only version 1 (an older client) on the same daemon."""
    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", 1)
    with labhost.connect(sim_daemon.address(), timeout=60, client_name="old@shapes") as daemon:
        assert daemon.connection.protocol_version == 1
        echo, camera = daemon["echo"], daemon["small_camera"]
        frame = echo.frame(3, 4)
        assert frame.shape == (12,) and frame.tolist() == list(range(12))  # flat, as before
        assert camera.grab().shape == (48 * 64,)
        with pytest.raises(labhost.UnsupportedVersionError, match="complex128"):
            echo.conjugate([1.0, 2.0])  # the result cannot be expressed in version 1
        with pytest.raises(labhost.UnsupportedVersionError, match="no events"):
            echo.subscribe("numbers")
        echo.call_oneway("record", "old")  # run as an ordinary call; its result is dropped
        assert echo.add(1, 2) == 3  # the connection stays up
        assert "old" in echo.recorded()


def test_a_version_1_session_gets_a_result_holding_a_shaped_array_flat(sim_daemon):
    """A result that must be re-encoded for version 1 (a shaped array inside a list), on a raw
    version-1 session: it must come back flat, with its request's id."""
    with socket.create_connection(("127.0.0.1", sim_daemon.port), timeout=30) as s:
        hello = protocol.hello("raw@shapes", 1)
        hello["max_version"] = 1
        s.sendall(protocol.frame_bytes(protocol.HELLO, 1, hello))
        assert read_frame(s)[2]["version"] == 1
        s.sendall(protocol.frame_bytes(protocol.CALL, 7, {
            "service": "echo", "method": "echo", "args": [[np.zeros((2, 2), np.uint8)]], "kwargs": {}}))
        message_type, request_id, value = read_frame(s)
    assert message_type == protocol.RESULT and value[0].shape == (4,)
    assert request_id == 7
