"""Every simulated instrument, through a real daemon, as a scientist would use it."""

import math

import numpy as np
import pytest

import labhost


def test_laser_tunes_within_its_range_and_refuses_outside_it(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    assert laser.wavelength() == 1550.0
    laser.set_wavelength(1550.5)
    assert laser.wavelength() == 1550.5
    laser.set_wavelength(nm=1630)  # keyword argument, int accepted for a float64
    assert laser.wavelength() == 1630.0
    laser.set_wavelength(1500.0)
    assert laser.wavelength() == 1500.0
    for nm in (1499.9, 1630.1, -1.0, math.nan):
        with pytest.raises(labhost.DriverError) as e:
            laser.set_wavelength(nm)
        assert "outside the tuning range 1500-1630 nm" in e.value.message
        assert e.value.name == "driver_error" and e.value.code == 6
    assert laser.wavelength() == 1500.0  # unchanged by the refusals
    laser.set_wavelength(1550.0)


def test_laser_power_and_emission(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    assert laser.power() == 1.0
    laser.set_power(12.5)
    assert laser.power() == 12.5
    laser.set_power(mw=0.0)
    assert laser.power() == 0.0
    with pytest.raises(labhost.DriverError, match="outside 0-100"):
        laser.set_power(100.5)
    laser.set_power(1.0)
    assert laser.is_on() is False
    assert laser.on() is None
    assert laser.is_on() is True
    laser.off()
    assert laser.is_on() is False


def test_stage_moves_and_homes(sim_daemon, connect):
    stage = connect(sim_daemon.address("stage"))
    assert stage.position() == 0.0
    assert stage.speed() == 1000.0
    assert stage.move_to(25.5) == 25.5
    assert stage.position() == 25.5
    assert stage.move_to(mm=100) == 100.0
    with pytest.raises(labhost.DriverError, match="outside the travel"):
        stage.move_to(100.5)
    assert stage.home() == 0.0
    assert stage.position() == 0.0


def test_powermeter_reads_noisy_watts(sim_daemon, connect):
    meter = connect(sim_daemon.address("powermeter"))
    one = meter.read()
    assert isinstance(one, float) and abs(one - 1e-3) < 1e-4  # mean 1 mW, noise 10 uW
    many = meter.read_many(10000)
    assert isinstance(many, np.ndarray) and many.dtype == np.float64 and many.shape == (10000,)
    assert abs(many.mean() - 1e-3) < 1e-6
    assert 0.5e-5 < many.std() < 2e-5
    assert meter.read_many(0).shape == (0,)
    with pytest.raises(labhost.DriverError, match="count must be 0 to 1000000"):
        meter.read_many(-1)
    with pytest.raises(labhost.BadArgumentsError, match="count"):
        meter.read_many(1.5)  # a float for an int64 parameter


def expected_frame(height, width, frames_before, exposure_ms):
    """pixel (y, x) = (x + y + frames_before + int(exposure_ms)) mod 65536."""
    y = np.arange(height, dtype=np.int64)[:, None]
    x = np.arange(width, dtype=np.int64)[None, :]
    return ((x + y + frames_before + int(exposure_ms)) % 65536).astype(np.uint16)


def test_camera_frame_of_2048_by_2048_arrives_as_numpy_and_every_pixel_is_right(sim_daemon, connect):
    camera = connect(sim_daemon.address("camera"))
    assert camera.shape().tolist() == [2048, 2048]  # a vector<int64>: an int64 array
    camera.set_exposure(12.75)
    assert camera.exposure() == 12.75
    for _ in range(3):  # several frames: the frame counter moves every pixel
        before = camera.frames()
        frame = camera.grab()
        assert isinstance(frame, np.ndarray)
        assert frame.dtype == np.uint16 and frame.shape == (2048, 2048)  # its shape, no reshape
        assert frame.flags.c_contiguous
        expected = expected_frame(2048, 2048, before, 12.75)
        assert np.array_equal(frame, expected), "first wrong pixel (y, x): %s" % (
            np.argwhere(frame != expected)[:1].tolist(),)
        assert camera.frames() == before + 1
    # The longest exposure: pixels up to 4094 + 60000 + frames.
    camera.set_exposure(ms=60000)
    before = camera.frames()
    assert np.array_equal(camera.grab(), expected_frame(2048, 2048, before, 60000))
    with pytest.raises(labhost.DriverError, match="exposure must be in"):
        camera.set_exposure(0)
    camera.set_exposure(10)


def received_buffer(array):
    """The buffer a received array views (numpy keeps a memoryview of it as the base, below
    the flat array that was reshaped)."""
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


@pytest.mark.parametrize("service, shape", [("camera", (2048, 2048)), ("small_camera", (48, 64))])
def test_received_frames_are_views_on_the_received_buffer(sim_daemon, connect, service, shape):
    camera = connect(sim_daemon.address(service))
    frame = camera.grab()
    assert frame.shape == shape and not frame.flags.owndata
    # The payload buffer: pad bytes that align the pixels, then tag, element type, ndim, two
    # u32 dimensions, pixels.
    buffer = received_buffer(frame)
    assert isinstance(buffer, bytearray) and len(buffer) == buffer.start + 11 + frame.nbytes
    assert frame.flags.aligned and frame.ctypes.data % 16 == 0
    assert frame.flags.writeable
    frame[0, 0] = 7  # writable: it belongs to the caller
    assert buffer[buffer.start + 11:buffer.start + 13] == b"\x07\x00"


def test_small_camera_parameters(sim_daemon, connect):
    camera = connect(sim_daemon.address("small_camera"))
    assert camera.shape().tolist() == [48, 64]
    assert camera.exposure() == 3.7
    before = camera.frames()
    image = camera.grab()
    assert image.shape == (48, 64) and np.array_equal(image, expected_frame(48, 64, before, 3.7))
