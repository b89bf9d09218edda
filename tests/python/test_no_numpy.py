"""Without numpy: typed arrays arrive as memoryviews cast to their element type (no copy),
and array.array arguments travel as typed arrays. Run in a child interpreter where
`import numpy` fails."""

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

    # Every pixel of a small frame.
    camera = daemon["small_camera"]
    before = camera.frames()
    frame = camera.grab()
    assert isinstance(frame, memoryview), type(frame)
    assert frame.format == "H" and frame.itemsize == 2 and len(frame) == 64 * 48
    offset = before + int(camera.exposure())
    for y in range(48):
        for x in range(64):
            assert frame[y * 64 + x] == (x + y + offset) % 65536, (x, y)
    shape = camera.shape()
    assert shape.format == "q" and shape.tolist() == [48, 64]

    # Every pixel of a 2048 x 2048 frame, row by row.
    camera = daemon["camera"]
    before = camera.frames()
    frame = camera.grab()
    assert frame.format == "H" and len(frame) == 2048 * 2048
    offset = before + int(camera.exposure())
    for y in range(2048):
        row = array.array("H", [(x + y + offset) % 65536 for x in range(2048)])
        assert frame[y * 2048:(y + 1) * 2048] == row, y

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
