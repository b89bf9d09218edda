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
    9 shaped array (protocol version 2): u8 element type + u8 ndim (2 to 32) + ndim u32
              dimensions, outermost first + the elements in row-major (C) order

Element types: float64, float32, int64 ... uint8 and, from protocol version 2, complex64,
complex128 (real part, then imaginary part) and bool (bytes 0 or 1).

Python mapping, both ways: None, bool, int (int64 range, else OverflowError), float, str,
bytes (bytearray is sent as bytes), list (tuples are sent as lists), dict with str keys (order
kept), and typed arrays:

- numpy arrays of those dtypes (numpy.bool_ for bool, complex64, complex128) are sent with
  their shape: one dimension as tag 8, two or more as tag 9 (C order; a non-contiguous or
  big-endian array is copied into a contiguous little-endian one first), none (a 0-d array)
  as the scalar it holds. array.array and numeric memoryviews (format "?" for bool) are sent
  too, a memoryview of several dimensions with its shape; a memoryview of format "B" is a
  uint8 array (send bytes(view) for bytes).
- Received typed arrays are numpy arrays of their shape that share the received buffer (no
  copy) when numpy is installed. Without numpy they are memoryviews cast to the element type
  and, when it has two or more dimensions, to the shape (also no copy; ``.tolist()`` gives
  the numbers, nested by the shape; ``.cast("B").cast(view.format)`` the flat view); a shaped
  array with a dimension of 0 arrives flat, as memoryview cannot take such a shape. complex
  arrays, which no memoryview format holds, arrive as lists of Python complex (nested like
  ``.tolist()`` for a shaped one). decode(arrays="array") gives array.array copies instead,
  always flat (the shape dropped), and lists of bool or complex for those element types.

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
    "NULL", "BOOL", "INT64", "FLOAT64", "STRING", "BYTES", "LIST", "MAP", "ARRAY", "SHAPED_ARRAY",
    "ELEMENT_TYPES", "MAX_DEPTH", "MAX_ITEMS", "MAX_DIMENSIONS",
    "Encoder", "encode", "encode_into", "decode", "has_numpy",
]

NULL, BOOL, INT64, FLOAT64, STRING, BYTES, LIST, MAP, ARRAY, SHAPED_ARRAY = range(10)

MAX_DEPTH = 64          # lists/maps nested deeper are refused (both ways)
MAX_ITEMS = 1 << 22     # list + map entries in one decoded value, all levels
MAX_DIMENSIONS = 32     # a shaped array has 2 to 32 dimensions

COMPLEX64, COMPLEX128, BOOL_ELEMENTS = 11, 12, 13  # element types of protocol version 2

# Element type byte -> (name, size, memoryview format or array typecode, numpy dtype string).
# complex has no memoryview format (None); bool has "?" (not an array.array typecode).
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
    COMPLEX64: ("complex64", 8, None, "<c8"),
    COMPLEX128: ("complex128", 16, None, "<c16"),
    BOOL_ELEMENTS: ("bool", 1, "?", "?"),
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
_shaped_head = struct.Struct("<BBB")
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
    if typecode == "?":
        return BOOL_ELEMENTS
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

    def typed(self, element, count, raw, shape=None):
        """A typed array: `raw` is a byte-format buffer of count elements, little-endian, in
        row-major order. `shape`: its dimensions when it has two or more (tag 9), else None."""
        if shape is None:
            self.check_size(count, "array")
            self.out += _array_head.pack(ARRAY, element, count)
        else:
            if len(shape) > MAX_DIMENSIONS:
                raise ValueError("an array of %d dimensions: labhost sends at most %d"
                                 % (len(shape), MAX_DIMENSIONS))
            for n in shape:
                self.check_size(n, "array dimension")
            self.out += _shaped_head.pack(SHAPED_ARRAY, element, len(shape))
            self.out += struct.pack("<%dI" % len(shape), *shape)
        self.blob(raw, count * ELEMENT_TYPES[element][1])

    def other(self, v, depth):
        if _np is not None and isinstance(v, (_np.ndarray, _np.generic)):
            if isinstance(v, _np.ndarray):
                return self.numpy_array(v, depth)
            return self.value(v.item(), depth)  # numpy scalars: as the Python number
        if isinstance(v, _array.array):
            return self.python_array(v)
        if isinstance(v, memoryview):
            return self.memory(v, depth)
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

    def numpy_array(self, a, depth):
        if a.ndim == 0:  # a 0-d array: the scalar it holds
            return self.value(a.item(), depth)
        element = _numpy_element(a.dtype)
        if element is None:
            raise TypeError("labhost cannot send a numpy array of dtype %s (supported: %s)"
                            % (a.dtype, ", ".join(info[0] for info in ELEMENT_TYPES.values())))
        wire = _np.dtype(ELEMENT_TYPES[element][3])
        if a.dtype != wire:  # big-endian data: converted to the wire's little-endian
            a = a.astype(wire)
        a = _np.ascontiguousarray(a)  # C order; no copy when it is already
        raw = memoryview(a.reshape(-1)).cast("B") if a.size else b""
        self.typed(element, a.size, raw, a.shape if a.ndim > 1 else None)

    def python_array(self, a):
        element = _array_typecode_element(a.typecode, a.itemsize)
        if element is None:
            raise TypeError("labhost cannot send an array.array of typecode %r" % a.typecode)
        if not _LITTLE and a.itemsize > 1:
            a = _array.array(a.typecode, a)
            a.byteswap()
        self.typed(element, len(a), memoryview(a).cast("B"))

    def memory(self, m, depth):
        """A memoryview is a typed array of its format (uint8 for "B") and shape; bytes(m)
        sends bytes."""
        if m.ndim == 0:
            return self.value(m.tolist(), depth)
        fmt = m.format
        native = fmt.lstrip("@=<")
        element = _array_typecode_element(native, m.itemsize) if len(native) == 1 else None
        if element is None or (fmt[0] in "<=" and not _LITTLE):
            raise TypeError("labhost cannot send a memoryview of format %r" % fmt)
        count = m.nbytes // m.itemsize if m.itemsize else 0
        shape = m.shape if m.ndim > 1 else None
        raw = m.cast("B") if m.c_contiguous else memoryview(m.tobytes())
        if not _LITTLE and m.itemsize > 1 and fmt[0] not in "<=":
            a = _array.array(native)
            a.frombytes(raw)
            a.byteswap()
            raw = memoryview(a).cast("B")
        self.typed(element, count, raw, shape)


def _numpy_element(dtype):
    """Element type byte of a numpy dtype, or None."""
    if dtype.fields or dtype.subdtype is not None:
        return None
    kind = {"f": "float", "i": "int", "u": "uint", "c": "complex"}.get(dtype.kind)
    if kind is not None:
        return _ELEMENT_BY_NAME.get("%s%d" % (kind, dtype.itemsize * 8))
    if dtype.kind == "b":
        return BOOL_ELEMENTS
    return None


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
        if tag == ARRAY or tag == SHAPED_ARRAY:
            return self.array(pos, tag == SHAPED_ARRAY)
        _fail("unknown value tag", pos - 1 - self.base)

    def array(self, pos, shaped):
        """A typed array after its tag: element type, [ndim and dimensions when shaped, else
        the count], elements. Checks and offsets as the C++ decoder's (read_array)."""
        mv = self.mv
        end = self.end
        if pos >= end:
            _fail("truncated value", pos - self.base)
        info = ELEMENT_TYPES.get(mv[pos])
        if info is None:
            _fail("unknown typed-array element type", pos - self.base)
        pos += 1
        size = info[1]
        shape = None
        if shaped:
            if pos >= end:
                _fail("truncated value", pos - self.base)
            ndim = mv[pos]
            if not 2 <= ndim <= MAX_DIMENSIONS:
                _fail("shaped array needs 2 to %d dimensions" % MAX_DIMENSIONS, pos - self.base)
            pos += 1
            if 4 * ndim > end - pos:
                _fail("truncated value", pos - self.base)
            shape = struct.unpack_from("<%dI" % ndim, mv, pos)
            pos += 4 * ndim
            # The product is checked against the elements left at each step, as in C++.
            most = (end - pos) // size
            count = 0 if 0 in shape else 1
            for n in shape:
                if count == 0:
                    break
                if count > most // n:
                    _fail("truncated value", pos - self.base)
                count *= n
        else:
            if pos + 4 > end:
                _fail("truncated value", pos - self.base)
            (count,) = _u32.unpack_from(mv, pos)
            pos += 4
            if count > (end - pos) // size:
                _fail("truncated value", pos - self.base)
        nbytes = count * size
        if info[2] == "?" and count:
            flags = mv[pos:pos + nbytes].tobytes()
            others = flags.translate(None, b"\x00\x01")
            if others:  # the first byte that is neither 0 nor 1 (translate keeps the order)
                _fail("bool byte is neither 0 nor 1", pos + flags.index(others[:1]) - self.base)
        return self.typed_array(info, pos, count, nbytes, shape), pos + nbytes

    def typed_array(self, info, pos, count, nbytes, shape):
        arrays = self.arrays
        if arrays == "numpy":
            a = _np.frombuffer(self.buf, dtype=info[3], count=count, offset=pos)
            return a if shape is None else a.reshape(shape)
        fmt = info[2]
        if fmt is None:  # complex: no memoryview format holds it
            return _complex_list(self.mv[pos:pos + nbytes], info[1] // 2, count,
                                 shape if arrays != "array" else None)
        if fmt == "?" and arrays == "array":  # array.array has no bool typecode
            return [b == 1 for b in self.mv[pos:pos + nbytes]]
        if arrays == "array" or not _LITTLE:
            a = _array.array(fmt)
            a.frombytes(self.mv[pos:pos + nbytes])
            if not _LITTLE and info[1] > 1:
                a.byteswap()
            return a
        view = self.mv[pos:pos + nbytes]
        if shape is not None and count:  # memoryview refuses a shape with a 0 in it
            return view.cast(fmt, shape)
        return view.cast(fmt)


def _complex_list(raw, part_size, count, shape):
    """complex elements as a list of Python complex, nested by `shape` as numpy's tolist()
    nests them (None, or no elements: flat)."""
    parts = struct.unpack("<%d%s" % (2 * count, "f" if part_size == 4 else "d"), raw)
    values = [complex(parts[i], parts[i + 1]) for i in range(0, 2 * count, 2)]
    if shape is None or not count:
        return values
    for n in reversed(shape[1:]):  # the innermost dimension first
        values = [values[i:i + n] for i in range(0, len(values), n)]
    return values


def first_array_data(head):
    """Where the elements of the first typed array of an encoded value start, counted from
    the value's first byte, when that array's prefix lies within `head` (the encoding's first
    bytes); else None. For placing a received payload so that those elements are aligned:
    it trusts nothing, and only steps over the values before that array."""
    end = len(head)
    tag = head[0] if end else NULL
    if tag == ARRAY:
        return 6 if end >= 6 else None
    if tag != LIST and tag != MAP and tag != SHAPED_ARRAY:  # a scalar: no array (most replies)
        return None
    pos = 0
    open_entries = []  # [entries left, is a map] of each list and map around pos
    while True:
        while open_entries and open_entries[-1][0] == 0:
            open_entries.pop()
        if open_entries:
            open_entries[-1][0] -= 1
            if open_entries[-1][1]:  # a map entry: its key first
                if pos + 4 > end:
                    return None
                pos += 4 + _u32.unpack_from(head, pos)[0]
        elif pos:
            return None  # the value ended before any array
        if pos >= end:
            return None
        tag = head[pos]
        if tag == ARRAY:
            return pos + 6 if pos + 6 <= end else None
        if tag == SHAPED_ARRAY:
            if pos + 3 > end:
                return None
            data = pos + 3 + 4 * head[pos + 2]
            return data if data <= end else None
        if tag in (LIST, MAP):
            if pos + 5 > end:
                return None
            open_entries.append([_u32.unpack_from(head, pos + 1)[0], tag == MAP])
            pos += 5
        elif tag in (STRING, BYTES):
            if pos + 5 > end:
                return None
            pos += 5 + _u32.unpack_from(head, pos + 1)[0]
        else:
            size = _SCALAR_SIZES.get(tag)
            if size is None:
                return None
            pos += size
            if not open_entries:
                return None


_SCALAR_SIZES = {NULL: 1, BOOL: 2, INT64: 9, FLOAT64: 9}


def decode(buf, start=0, end=None, max_depth=MAX_DEPTH, max_items=MAX_ITEMS, arrays=None):
    """Decodes exactly one value filling buf[start:end].

    Typed arrays share `buf` (no copy): numpy arrays of their shape when numpy is installed,
    else memoryviews cast to the element type and shape (see the module's doc for complex and
    bool). `arrays` forces "numpy", "memoryview" or "array" (array.array, a flat copy).
    Malformed input raises BadFrameError naming the byte offset (from `start`).
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
