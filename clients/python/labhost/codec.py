"""The tagged binary value encoding of labhost (core/include/labhost/value_codec.h).

One value is a tag byte followed by its body; all integers are little-endian::

    0 null    (no body)
    1 bool    u8 0 or 1
    2 int64   8 bytes
    3 float64 8 bytes (IEEE 754)
    4 string  u32 length + UTF-8 bytes
    5 bytes   u32 length + raw bytes
    6 list    u32 count + count values
    7 map     u32 count + count (u32 key length + UTF-8 key, value), order kept
    8 array   u8 element type + u32 element count + raw little-endian elements

Python mapping, both ways: None, bool, int (int64 range, else OverflowError), float, str,
bytes (bytearray is sent as bytes), list (tuples are sent as lists), dict with str keys (order
kept), and typed arrays: numpy arrays, array.array and numeric memoryviews are sent as typed
arrays (multi-dimensional numpy arrays flattened in C order; a memoryview of format "B" is a
uint8 array, send bytes(view) for bytes); received typed arrays become numpy
arrays sharing the received buffer (no copy) when numpy is installed, else memoryviews cast
to the element type (also no copy), whose ``.tolist()`` gives the numbers.

The decoder takes untrusted bytes: it checks every length against the bytes that remain
before allocating, limits nesting depth and entry count, and raises BadFrameError (never
IndexError or MemoryError) on malformed input.
"""

import array as _array
import struct
import sys

from .errors import BadFrameError

try:  # numpy is used when present, never required
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

__all__ = [
    "NULL", "BOOL", "INT64", "FLOAT64", "STRING", "BYTES", "LIST", "MAP", "ARRAY",
    "ELEMENT_TYPES", "MAX_DEPTH", "MAX_ITEMS",
    "Encoder", "encode", "encode_into", "decode", "has_numpy",
]

NULL, BOOL, INT64, FLOAT64, STRING, BYTES, LIST, MAP, ARRAY = range(9)

MAX_DEPTH = 64          # lists/maps nested deeper are refused (both ways)
MAX_ITEMS = 1 << 22     # list + map entries in one decoded value, all levels

# Element type byte -> (name, size, struct/array typecode, numpy dtype string).
ELEMENT_TYPES = {
    1: ("float64", 8, "d", "<f8"),
    2: ("float32", 4, "f", "<f4"),
    3: ("int64", 8, "q", "<i8"),
    4: ("int32", 4, "i", "<i4"),
    5: ("int16", 2, "h", "<i2"),
    6: ("int8", 1, "b", "i1"),
    7: ("uint64", 8, "Q", "<u8"),
    8: ("uint32", 4, "I", "<u4"),
    9: ("uint16", 2, "H", "<u2"),
    10: ("uint8", 1, "B", "u1"),
}
_ELEMENT_BY_NAME = {info[0]: code for code, info in ELEMENT_TYPES.items()}

# Buffers at least this large travel as their own part (socket.sendmsg), not copied into
# the frame: an 8 MiB array argument is sent straight from the caller's memory.
OUT_OF_LINE = 64 * 1024

_LITTLE = sys.byteorder == "little"

_u32 = struct.Struct("<I")
_i64 = struct.Struct("<q")
_f64 = struct.Struct("<d")
_tag_u32 = struct.Struct("<BI")
_tag_i64 = struct.Struct("<Bq")
_tag_f64 = struct.Struct("<Bd")
_array_head = struct.Struct("<BBI")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_U32_MAX = 0xFFFFFFFF

_TRUE = bytes([BOOL, 1])
_FALSE = bytes([BOOL, 0])
_NONE = bytes([NULL])


def has_numpy():
    """True when received typed arrays become numpy arrays."""
    return _np is not None


# --------------------------------------------------------------------------- encoding


def _array_typecode_element(typecode, itemsize):
    """Element type byte of an array.array / memoryview format, or None."""
    if typecode in ("f", "d"):
        return {4: 2, 8: 1}.get(itemsize)
    if typecode in ("b", "h", "i", "l", "q", "n"):
        return {1: 6, 2: 5, 4: 4, 8: 3}.get(itemsize)
    if typecode in ("B", "H", "I", "L", "Q", "N"):
        return {1: 10, 2: 9, 4: 8, 8: 7}.get(itemsize)
    return None


class Encoder:
    """Writes into `out` (a bytearray); large buffers become separate `parts`.

    `finish()` returns every part to send, in order. `depth` arguments count the lists and
    maps around a value (the daemon refuses a list or map at depth MAX_DEPTH or more).
    """

    __slots__ = ("out", "parts")

    def __init__(self, out):
        self.out = out
        self.parts = []

    def finish(self):
        self.parts.append(self.out)
        return self.parts

    def blob(self, data, size):
        """Appends a raw buffer, out of line when it is large."""
        if size >= OUT_OF_LINE:
            self.parts.append(self.out)
            self.parts.append(data)
            self.out = bytearray()
        else:
            self.out += data

    def value(self, v, depth):
        t = type(v)
        out = self.out
        if t is float:
            out += _tag_f64.pack(FLOAT64, v)
        elif t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise OverflowError("int %d does not fit in int64" % v)
            out += _tag_i64.pack(INT64, v)
        elif t is str:
            data = v.encode("utf-8")
            out += _tag_u32.pack(STRING, len(data))
            self.blob(data, len(data))
        elif v is None:
            out.append(NULL)
        elif t is bool:
            out += _TRUE if v else _FALSE
        elif t is list or t is tuple:
            self.sequence(v, depth)
        elif t is dict:
            self.mapping(v, depth)
        elif t is bytes or t is bytearray:
            self.check_size(len(v), "bytes")
            out += _tag_u32.pack(BYTES, len(v))
            self.blob(v, len(v))
        else:
            self.other(v, depth)

    def check_size(self, n, what):
        if n > _U32_MAX:
            raise ValueError("%s of %d entries is over the protocol's u32 limit" % (what, n))

    def sequence(self, v, depth):
        if depth >= MAX_DEPTH:
            raise ValueError("value nested deeper than %d levels" % MAX_DEPTH)
        self.check_size(len(v), "list")
        self.out += _tag_u32.pack(LIST, len(v))
        for element in v:
            self.value(element, depth + 1)

    def mapping(self, v, depth):
        if depth >= MAX_DEPTH:
            raise ValueError("value nested deeper than %d levels" % MAX_DEPTH)
        self.check_size(len(v), "map")
        self.out += _tag_u32.pack(MAP, len(v))
        for key, element in v.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise TypeError("map keys must be str, not %s (%r)" % (type(key).__name__, key))
                key = str(key)
            data = key.encode("utf-8")
            self.out += _u32.pack(len(data))
            self.out += data
            self.value(element, depth + 1)

    def typed(self, element, count, raw):
        """A typed array: `raw` is a byte-format buffer of count elements, little-endian."""
        self.check_size(count, "array")
        self.out += _array_head.pack(ARRAY, element, count)
        self.blob(raw, count * ELEMENT_TYPES[element][1])

    def other(self, v, depth):
        if _np is not None and isinstance(v, (_np.ndarray, _np.generic)):
            if isinstance(v, _np.ndarray):
                return self.numpy_array(v)
            return self.value(v.item(), depth)  # numpy scalars: as the Python number
        if isinstance(v, _array.array):
            return self.python_array(v)
        if isinstance(v, memoryview):
            return self.memory(v)
        # Subclasses of the plain types (IntEnum, OrderedDict, str subclasses, ...).
        if isinstance(v, bool):
            return self.value(bool(v), depth)
        if isinstance(v, int):
            return self.value(int(v), depth)
        if isinstance(v, float):
            return self.value(float(v), depth)
        if isinstance(v, str):
            return self.value(str(v), depth)
        if isinstance(v, (bytes, bytearray)):
            return self.value(bytes(v), depth)
        if isinstance(v, (list, tuple)):
            return self.sequence(v, depth)
        if isinstance(v, dict):
            return self.mapping(v, depth)
        raise TypeError("labhost cannot send a value of type %s" % type(v).__name__)

    def numpy_array(self, a):
        dt = a.dtype
        element = None
        if dt.kind in "fiu" and not dt.fields and dt.subdtype is None:
            element = _ELEMENT_BY_NAME.get("%s%d" % ({"f": "float", "i": "int", "u": "uint"}[dt.kind],
                                                     dt.itemsize * 8))
        if element is None:
            raise TypeError("labhost cannot send a numpy array of dtype %s (supported: %s)"
                            % (dt, ", ".join(info[0] for info in ELEMENT_TYPES.values())))
        wire = _np.dtype(ELEMENT_TYPES[element][3])
        if dt != wire:  # big-endian data: converted to the wire's little-endian
            a = a.astype(wire)
        a = _np.ascontiguousarray(a)  # C order; no copy when it is already
        raw = memoryview(a.reshape(-1)).cast("B") if a.size else b""
        self.typed(element, a.size, raw)

    def python_array(self, a):
        element = _array_typecode_element(a.typecode, a.itemsize)
        if element is None:
            raise TypeError("labhost cannot send an array.array of typecode %r" % a.typecode)
        if not _LITTLE and a.itemsize > 1:
            a = _array.array(a.typecode, a)
            a.byteswap()
        self.typed(element, len(a), memoryview(a).cast("B"))

    def memory(self, m):
        """A memoryview is a typed array of its format (uint8 for "B"); bytes(m) sends bytes."""
        fmt = m.format
        native = fmt.lstrip("@=<")
        element = _array_typecode_element(native, m.itemsize) if len(native) == 1 else None
        if element is None or (fmt[0] in "<=" and not _LITTLE):
            raise TypeError("labhost cannot send a memoryview of format %r" % fmt)
        count = m.nbytes // m.itemsize if m.itemsize else 0
        raw = m.cast("B") if m.c_contiguous else memoryview(m.tobytes())
        if not _LITTLE and m.itemsize > 1 and fmt[0] not in "<=":
            a = _array.array(native)
            a.frombytes(raw)
            a.byteswap()
            raw = memoryview(a).cast("B")
        self.typed(element, count, raw)


def encode_into(out, value):
    """Appends the encoding of `value` to the bytearray `out`.

    Returns the list of parts to send in order: ``[out]`` when everything fits in `out`,
    else bytearrays interleaved with the large buffers that were kept out of line.
    """
    e = Encoder(out)
    e.value(value, 0)
    return e.finish()


def encode(value):
    """The encoding of `value` as bytes."""
    parts = encode_into(bytearray(), value)
    if len(parts) == 1:
        return bytes(parts[0])
    return b"".join(parts)


# --------------------------------------------------------------------------- decoding


def _fail(what, offset):
    raise BadFrameError("payload: %s at byte %d" % (what, offset))


class _Decoder:
    __slots__ = ("buf", "mv", "end", "items", "base", "max_depth", "max_items", "arrays")

    def __init__(self, buf, start, end, max_depth, max_items, arrays):
        self.buf = buf
        self.mv = memoryview(buf)
        if self.mv.format != "B" or self.mv.ndim != 1:
            self.mv = self.mv.cast("B")
        self.base = start
        self.end = end
        self.items = 0
        self.max_depth = max_depth
        self.max_items = max_items
        self.arrays = arrays

    def text(self, pos):
        end = self.end
        if pos + 4 > end:
            _fail("truncated value", pos - self.base)
        (n,) = _u32.unpack_from(self.mv, pos)
        pos += 4
        if n > end - pos:
            _fail("truncated value", pos - self.base)
        try:
            s = str(self.mv[pos:pos + n], "utf-8")
        except UnicodeDecodeError:
            _fail("string is not valid UTF-8", pos - self.base)
        return s, pos + n

    def count(self, n, pos):
        self.items += n
        if self.items > self.max_items:
            _fail("value has too many entries", pos - self.base)

    def read(self, pos, depth):
        mv = self.mv
        end = self.end
        if pos >= end:
            _fail("truncated value", pos - self.base)
        tag = mv[pos]
        pos += 1
        if tag == FLOAT64:
            if pos + 8 > end:
                _fail("truncated value", pos - self.base)
            return _f64.unpack_from(mv, pos)[0], pos + 8
        if tag == INT64:
            if pos + 8 > end:
                _fail("truncated value", pos - self.base)
            return _i64.unpack_from(mv, pos)[0], pos + 8
        if tag == STRING:
            return self.text(pos)
        if tag == NULL:
            return None, pos
        if tag == BOOL:
            if pos >= end:
                _fail("truncated value", pos - self.base)
            b = mv[pos]
            if b > 1:
                _fail("bool byte is neither 0 nor 1", pos - self.base)
            return b == 1, pos + 1
        if tag == MAP:
            if depth >= self.max_depth:
                _fail("value nested too deeply", pos - 1 - self.base)
            if pos + 4 > end:
                _fail("truncated value", pos - self.base)
            (n,) = _u32.unpack_from(mv, pos)
            pos += 4
            if n > (end - pos) // 5:  # at least 5 bytes per entry
                _fail("truncated value", pos - self.base)
            self.count(n, pos)
            result = {}
            for _ in range(n):
                key, pos = self.text(pos)
                result[key], pos = self.read(pos, depth + 1)
            return result, pos
        if tag == LIST:
            if depth >= self.max_depth:
                _fail("value nested too deeply", pos - 1 - self.base)
            if pos + 4 > end:
                _fail("truncated value", pos - self.base)
            (n,) = _u32.unpack_from(mv, pos)
            pos += 4
            if n > end - pos:  # at least 1 byte per entry
                _fail("truncated value", pos - self.base)
            self.count(n, pos)
            result = []
            append = result.append
            for _ in range(n):
                element, pos = self.read(pos, depth + 1)
                append(element)
            return result, pos
        if tag == BYTES:
            if pos + 4 > end:
                _fail("truncated value", pos - self.base)
            (n,) = _u32.unpack_from(mv, pos)
            pos += 4
            if n > end - pos:
                _fail("truncated value", pos - self.base)
            return mv[pos:pos + n].tobytes(), pos + n
        if tag == ARRAY:
            if pos >= end:
                _fail("truncated value", pos - self.base)
            info = ELEMENT_TYPES.get(mv[pos])
            if info is None:
                _fail("unknown typed-array element type", pos - self.base)
            pos += 1
            if pos + 4 > end:
                _fail("truncated value", pos - self.base)
            (count,) = _u32.unpack_from(mv, pos)
            pos += 4
            size = info[1]
            if count > (end - pos) // size:
                _fail("truncated value", pos - self.base)
            nbytes = count * size
            return self.typed_array(info, pos, count, nbytes), pos + nbytes
        _fail("unknown value tag", pos - 1 - self.base)

    def typed_array(self, info, pos, count, nbytes):
        arrays = self.arrays
        if arrays == "numpy":
            return _np.frombuffer(self.buf, dtype=info[3], count=count, offset=pos)
        if arrays == "array" or not _LITTLE:
            a = _array.array(info[2])
            a.frombytes(self.mv[pos:pos + nbytes])
            if not _LITTLE and info[1] > 1:
                a.byteswap()
            return a
        return self.mv[pos:pos + nbytes].cast(info[2])


def decode(buf, start=0, end=None, max_depth=MAX_DEPTH, max_items=MAX_ITEMS, arrays=None):
    """Decodes exactly one value filling buf[start:end].

    Typed arrays share `buf` (no copy): numpy arrays when numpy is installed, else memoryviews
    cast to the element type. `arrays` forces "numpy", "memoryview" or "array" (array.array,
    a copy). Malformed input raises BadFrameError naming the byte offset (from `start`).
    """
    if end is None:
        end = len(buf) if not isinstance(buf, memoryview) else buf.nbytes
    if arrays is None:
        arrays = "numpy" if _np is not None else "memoryview"
    elif arrays == "numpy" and _np is None:
        raise ValueError("numpy is not installed")
    d = _Decoder(buf, start, end, max_depth, max_items, arrays)
    try:
        value, pos = d.read(start, 0)
    except RecursionError:  # pragma: no cover - max_depth keeps well below the limit
        _fail("value nested too deeply", 0)
    if pos != end:
        _fail("bytes left after the value", pos - start)
    return value
