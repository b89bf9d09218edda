"""Without numpy: typed arrays arrive as memoryviews cast to their element type and shape (no
copy), complex arrays as lists of complex, and array.array and memoryview arguments travel as
typed arrays; events too. Run in a child interpreter where `import numpy` fails."""

import os
import subprocess
import sys
import textwrap

from daemon_process import CLIENT_DIR

CHILD = textwrap.dedent(r"""
    import array
    import sys

    sys.modules["numpy"] = None  # `import numpy` now raises ImportError
    sys.path.insert(0, sys.argv[2])
    import labhost
    from labhost import codec

    assert not codec.has_numpy()
    daemon = labhost.connect(sys.argv[1], timeout=60, client_name="nonumpy@test")

    # Every pixel of a small frame: a memoryview of shape (height, width).
    camera = daemon["small_camera"]
    before = camera.frames()
    frame = camera.grab()
    assert isinstance(frame, memoryview), type(frame)
    assert frame.format == "H" and frame.itemsize == 2 and frame.shape == (48, 64)
    offset = before + int(camera.exposure())
    for y in range(48):
        for x in range(64):
            assert frame[y, x] == (x + y + offset) % 65536, (x, y)
    shape = camera.shape()
    assert shape.format == "q" and shape.tolist() == [48, 64]

    # Every pixel of a 2048 x 2048 frame, row by row, through the flat view.
    camera = daemon["camera"]
    before = camera.frames()
    frame = camera.grab()
    assert frame.format == "H" and frame.shape == (2048, 2048)
    flat = frame.cast("B").cast("H")
    offset = before + int(camera.exposure())
    for y in range(2048):
        row = array.array("H", [(x + y + offset) % 65536 for x in range(2048)])
        assert flat[y * 2048:(y + 1) * 2048] == row, y

    echo = daemon["echo"]
    for typecode in "bBhHiIlLqQfd":
        sent = array.array(typecode, [0, 1, 2, 100])
        back = echo.echo(sent)
        assert isinstance(back, memoryview) and back.itemsize == sent.itemsize, typecode
        assert back.tolist() == [0, 1, 2, 100], typecode
        assert echo.echo(back).tolist() == [0, 1, 2, 100]  # what came back can go again
    ramp = echo.ramp(70000)
    assert ramp.format == "H" and ramp.tolist() == [i % 65536 for i in range(70000)]
    assert echo.sum(array.array("d", [0.5, 0.25])) == 0.75
    readings = daemon["powermeter"].read_many(5)
    assert readings.format == "d" and len(readings) == 5
    assert echo.echo({"a": [1, b"x", None]}) == {"a": [1, b"x", None]}
    assert echo.echo(bytes(100000)) == bytes(100000)

    # Shapes, bool and complex.
    grid = memoryview(array.array("i", range(6))).cast("B").cast("i", (2, 3))
    assert echo.shape_of(grid) == {"shape": [2, 3], "dtype": "int32", "count": 6}
    back = echo.echo(grid)
    assert back.format == "i" and back.tolist() == [[0, 1, 2], [3, 4, 5]]
    flags = memoryview(bytes([1, 0, 0, 1])).cast("?", (2, 2))
    negated = echo.negate(flags)
    assert negated.format == "?" and negated.tolist() == [[False, True], [True, False]]
    assert echo.frame(2, 3).tolist() == [[0, 1, 2], [3, 4, 5]]
    conjugated = echo.conjugate([1.0, 2.0])  # a list where an array is expected
    assert conjugated == [1 + 0j, 2 + 0j] and all(type(c) is complex for c in conjugated)

    # Events: frames published as memoryviews of their shape.
    frames = echo.subscribe("frames", queue=4)
    assert echo.emit_frames(2, 3, 5) == 2
    for n in (1, 2):
        event = frames.next(60)
        assert event.seq == n and event.value.shape == (3, 5)
        assert event.value.tolist() == [[n] * 5] * 3
    frames.close()

    # The asyncio client too.
    import asyncio
    import labhost.aio

    async def with_asyncio():
        camera = await labhost.aio.connect(sys.argv[1] + "/small_camera", timeout=60)
        async with camera:
            frame = await camera.grab()
            assert isinstance(frame, memoryview) and frame.shape == (48, 64)
            async for image in camera.stream("frames", queue=2):
                assert isinstance(image, memoryview) and image.shape == (48, 64)
                break
    asyncio.run(asyncio.wait_for(with_asyncio(), 120))

    # Forced choices of the decoder.
    as_array = codec.decode(codec.encode(array.array("i", [5, 6])), arrays="array")
    assert isinstance(as_array, array.array) and as_array.tolist() == [5, 6]
    try:
        codec.decode(b"\x00", arrays="numpy")
    except ValueError:
        pass
    else:
        raise AssertionError("arrays='numpy' without numpy")
    daemon.close()
    assert sys.modules["numpy"] is None
    print("no-numpy client ok")
""")


def test_typed_arrays_without_numpy(sim_daemon):
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, sim_daemon.address(), CLIENT_DIR],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, env=env)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.decode().strip() == "no-numpy client ok"
