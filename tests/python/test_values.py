"""Every value type, both ways, through test_echo.echo on a real daemon."""

import array
import math

import numpy as np
import pytest

import labhost
from labhost import codec


@pytest.fixture(scope="module")
def echo(sim_daemon):
    with labhost.connect(sim_daemon.address("echo"), timeout=60, client_name="pytest@values") as proxy:
        yield proxy


@pytest.mark.parametrize("value", [
    None, True, False,
    0, 1, -1, 2 ** 31, -2 ** 31 - 1, 2 ** 63 - 1, -2 ** 63,
    0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf,
    "", "laser", "héllo wörld ✓ 𝄞", "a\x00b",
    b"", b"\x00\x01\xff", bytes(range(256)),
    [], [1, 2.5, "x", None, True, b"b"], [[[]]],
    {}, {"a": 1, "b": [1, {"c": None}]},
], ids=repr)
def test_plain_values_come_back_equal_and_of_the_same_type(echo, value):
    back = echo.echo(value)
    assert back == value and type(back) is type(value)


def test_negative_zero_and_nan_keep_their_bits(echo):
    assert math.copysign(1.0, echo.echo(-0.0)) == -1.0
    assert math.isnan(echo.echo(math.nan))


def test_tuples_come_back_as_lists_and_bytearrays_as_bytes(echo):
    assert echo.echo((1, (2, "x"))) == [1, [2, "x"]]
    assert echo.echo(bytearray(b"\x01\x02")) == b"\x01\x02"


def test_maps_keep_their_order(echo):
    keys = ["zeta", "alpha", "mu", "beta", "omega"]
    back = echo.echo({k: i for i, k in enumerate(keys)})
    assert list(back) == keys and list(back.values()) == [0, 1, 2, 3, 4]


def test_nesting_up_to_the_limit_travels_and_beyond_is_refused_before_sending(echo):
    nested = "bottom"
    for _ in range(62):  # the call map and the args list are two levels more
        nested = [nested]
    assert echo.echo(nested) == nested
    with pytest.raises(ValueError, match="nested deeper"):
        echo.echo([nested])
    assert echo.echo(1) == 1  # the connection is untouched


def test_an_int_over_int64_is_refused_before_sending(echo):
    with pytest.raises(OverflowError, match="int64"):
        echo.echo(2 ** 63)
    assert echo.add(2, 3) == 5


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int32", "int16", "int8",
                                   "uint64", "uint32", "uint16", "uint8"])
def test_numpy_arrays_of_every_element_type_come_back_as_numpy_arrays(echo, dtype):
    info = np.iinfo(dtype) if dtype[0] in "iu" else np.finfo(dtype)
    a = np.array([0, 1, info.max, info.min, 7], dtype=dtype)
    back = echo.echo(a)
    assert isinstance(back, np.ndarray) and back.dtype == np.dtype(dtype)
    assert np.array_equal(back, a)
    empty = echo.echo(np.zeros(0, dtype=dtype))
    assert empty.dtype == np.dtype(dtype) and empty.size == 0


def test_multi_dimensional_and_non_contiguous_arrays_come_back_with_their_shape(echo):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    for sent in (a, a.T, a[:, ::2, 1], a[:, ::2], np.asfortranarray(a)):
        back = echo.echo(sent)
        assert back.shape == sent.shape and back.dtype == np.int32, sent.shape
        assert np.array_equal(back, sent)
    big_endian = np.arange(6, dtype=">f8").reshape(3, 2)
    back = echo.echo(big_endian)
    assert back.dtype == np.float64 and back.tolist() == [[0, 1], [2, 3], [4, 5]]


def test_numpy_arrays_of_other_dtypes_are_refused_naming_the_dtype(echo):
    for dtype in ("float16", "complex256", "datetime64[s]", "object"):
        with pytest.raises(TypeError, match=r"dtype %s" % dtype.replace("[", r"\[")):
            echo.echo(np.zeros(3, dtype=dtype))
    with pytest.raises(TypeError, match="labhost cannot send"):
        echo.echo(np.zeros(3, dtype=[("a", "i4")]))


@pytest.mark.parametrize("typecode", list("bBhHiIlLqQfd"))
def test_array_array_arguments_travel_as_typed_arrays(echo, typecode):
    a = array.array(typecode, [0, 1, 2, 100])
    kind = "f" if typecode in "fd" else ("i" if typecode.islower() else "u")
    back = echo.echo(a)
    assert back.dtype == np.dtype("%s%d" % (kind, a.itemsize))  # by size: 'l' is 4 or 8 bytes
    assert back.tolist() == [0, 1, 2, 100]


def test_numpy_scalars_and_memoryviews(echo):
    assert echo.echo(np.float64(2.5)) == 2.5 and type(echo.echo(np.float32(0.5))) is float
    assert echo.echo(np.int64(-7)) == -7 and type(echo.echo(np.uint8(7))) is int
    view = memoryview(array.array("h", [-1, 2, 3]))
    back = echo.echo(view)
    assert back.dtype == np.int16 and back.tolist() == [-1, 2, 3]
    assert echo.echo(bytes(memoryview(b"raw"))) == b"raw"


def test_arrays_inside_lists_and_maps(echo):
    value = {"trace": np.linspace(0, 1, 11), "frames": [np.arange(4, dtype=np.uint16)] * 2,
             "name": "scan"}
    back = echo.echo(value)
    assert list(back) == ["trace", "frames", "name"]
    assert np.array_equal(back["trace"], value["trace"])
    assert [f.tolist() for f in back["frames"]] == [[0, 1, 2, 3]] * 2
    assert back["name"] == "scan"


def test_large_bytes_and_arrays_both_ways(echo):
    payload = np.random.default_rng(5).integers(0, 256, 8 << 20, dtype=np.uint8)
    data = payload.tobytes()
    assert echo.reverse_bytes(data) == data[::-1]
    assert echo.echo(data) == data
    waveform = np.random.default_rng(6).standard_normal(1 << 20)  # 8 MiB of float64
    back = echo.echo(waveform)
    assert np.array_equal(back, waveform)
    assert echo.sum(waveform) == pytest.approx(float(waveform.sum()))


def test_keyword_arguments(echo):
    assert echo.echo(value={"k": [1]}) == {"k": [1]}
    assert echo.add(b=2, a=40) == 42
    assert echo.add(40, b=2) == 42
    assert echo.scale(x=2.0, factor=0.25) == 0.5
    assert echo.call("add", 1, b=2) == 3


def test_typed_results_of_the_test_driver(echo):
    ramp = echo.ramp(70000)
    assert ramp.dtype == np.uint16 and ramp.size == 70000
    assert np.array_equal(ramp, (np.arange(70000) % 65536).astype(np.uint16))
    assert echo.sum([1.0, 2.0, 3.5]) == 6.5  # a list where a float64 array is expected
    assert echo.sum(np.array([1.0, 2.0])) == 3.0
    assert echo.label() == "echo"
    assert echo.reverse_bytes(b"abc") == b"cba"


def test_the_codec_matches_the_daemon_byte_for_byte(echo):
    """What the daemon encodes decodes to what was sent, and re-encodes to the same bytes."""
    value = {"a": [None, True, -5, 2.5, "s", b"b", np.arange(3, dtype=np.int16)], "m": {}}
    back = echo.echo(value)
    assert codec.encode(back) == codec.encode(value)
