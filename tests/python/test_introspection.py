"""A proxy feels like a local object: dir() lists the driver's methods, help() shows their
parameter names and doc strings, inspect.signature works."""

import inspect
import pydoc

import pytest

import labhost


def render(thing):
    return pydoc.render_doc(thing, renderer=pydoc.plaintext)


def test_dir_lists_the_drivers_methods(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    names = dir(laser)
    for method in ("wavelength", "set_wavelength", "power", "set_power", "on", "off", "is_on"):
        assert method in names
    for own in ("call", "call_oneway", "describe", "topics", "subscribe", "stream", "lock",
                "unlock", "lock_status", "locked", "force_unlock", "close"):
        assert own in names
    camera = connect(sim_daemon.address("camera"))
    assert {"grab", "frames", "set_exposure", "exposure", "shape"} <= set(dir(camera))
    assert "grab" not in dir(laser)


def test_help_shows_the_signature_and_the_drivers_doc(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    text = render(laser.set_wavelength)
    assert "set_wavelength(nm: float64) -> None" in text
    assert "Tune to nm (1500-1630); outside the range is a driver_error." in text
    assert str(inspect.signature(laser.set_wavelength)) == "(nm: float64) -> None"
    assert str(inspect.signature(laser.wavelength)) == "() -> float64"
    assert laser.set_wavelength.__doc__ == "Tune to nm (1500-1630); outside the range is a driver_error."
    assert laser.set_wavelength.__name__ == "set_wavelength"
    echo = connect(sim_daemon.address("echo"))
    assert str(inspect.signature(echo.add)) == "(a: int64, b: int64) -> int64"
    assert str(inspect.signature(echo.echo)) == "(value: any) -> any"
    assert str(inspect.signature(echo.sum)) == "(values: array<float64>) -> float64"
    assert "a + b." in render(echo.add)


def test_help_on_the_proxy_lists_every_method_with_its_doc(sim_daemon, connect):
    camera = connect(sim_daemon.address("camera"))
    text = render(camera)
    assert "Simulated 16-bit camera" in text
    assert "Service 'camera', driver sim_camera 1.1.0 by labhost." in text
    assert "grab(self) -> array" in text
    assert "pixel (y, x) = x + y + frames() + int(exposure) mod 65536" in text
    assert "Topics (stream, subscribe):" in text and "frames (array<uint16>): Frames acquired" in text
    assert "set_exposure(self, ms: float64) -> None" in text
    assert "Set the exposure in ms." in text
    assert "locked(self, wait=5.0)" in text  # the proxy's own methods too
    laser = connect(sim_daemon.address("laser"))
    assert "Tunable laser" in type(laser).__doc__  # host.json's description wins
    assert isinstance(laser, labhost.ServiceProxy)


def test_oneway_methods_and_topics_are_described(sim_daemon, connect):
    echo = connect(sim_daemon.address("echo"))
    methods = {m["name"]: m for m in echo.describe()["methods"]}
    assert methods["record"]["oneway"] is True and methods["recorded"]["oneway"] is False
    assert "Oneway: returns None at once" in echo.record.__doc__
    assert [(t["name"], t["type"]) for t in echo.topics()] == [("numbers", "int64"),
                                                               ("frames", "array<uint16>")]


def test_unknown_attributes_say_which_methods_exist(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    with pytest.raises(AttributeError) as e:
        laser.set_wavelenght(1550)
    assert str(e.value) == ("service 'laser' (sim_laser) has no method 'set_wavelenght'; its methods: "
                            "wavelength, set_wavelength, power, set_power, on, off, is_on")
    assert not hasattr(laser, "grab")
    assert not hasattr(laser, "__array_interface__")


def test_describe_and_repr(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"))
    d = laser.describe()
    assert d["name"] == "laser" and d["driver"] == "sim_laser" and d["state"] == "ready"
    assert d["vendor"] == "labhost" and d["driver_version"] == "1.0.0"
    assert [m["name"] for m in d["methods"]][:2] == ["wavelength", "set_wavelength"]
    set_wavelength = d["methods"][1]
    assert set_wavelength["params"] == [{"name": "nm", "type": "float64"}]
    assert set_wavelength["returns"] == "null"
    assert repr(laser) == "<labhost.ServiceProxy lab://127.0.0.1:%d/laser (sim_laser 1.0.0)>" % sim_daemon.port


def test_the_daemon_object(sim_daemon, connect):
    daemon = connect(sim_daemon.address())
    assert isinstance(daemon, labhost.Daemon)
    assert daemon.name == "test"
    names = daemon.services()
    assert sorted(names) == sorted(["laser", "stage", "powermeter", "camera", "small_camera", "echo", "echo2"])
    assert set(names) <= set(dir(daemon))
    assert 0 < daemon.ping() < 10
    description = daemon.describe()
    assert description["daemon"] == "test"
    assert {s["name"]: s["driver"] for s in description["services"]}["camera"] == "sim_camera"
    assert daemon["laser"] is daemon.laser  # one proxy per service, cached
    assert daemon.laser.wavelength() == 1550.0
    assert daemon.describe("echo")["methods"][0]["name"] == "echo"
    with pytest.raises(labhost.NoSuchServiceError):
        daemon["nothing"]
    assert repr(daemon) == "<labhost.Daemon 'test' at lab://127.0.0.1:%d>" % sim_daemon.port


def test_methods_named_like_the_proxys_own_are_reached_with_call(sim_daemon, connect):
    daemon = connect(sim_daemon.address())
    description = daemon.describe("echo")
    description["methods"].append({"name": "lock", "params": [], "returns": "null", "doc": "x"})
    description["methods"].append({"name": "_hidden", "params": [], "returns": "null", "doc": "y"})
    proxy = labhost.ServiceProxy(daemon.connection, "echo", description)
    assert proxy.lock.__func__ is labhost.ServiceProxy.lock  # the proxy's own wins
    with pytest.raises(AttributeError, match=r"use \.call\('_hidden', \.\.\.\)"):
        proxy._hidden
    assert proxy.add(1, 2) == 3
    with pytest.raises(labhost.NoSuchMethodError):
        proxy.call("lock")  # the real driver has no such method


def test_connection_details(sim_daemon, connect):
    laser = connect(sim_daemon.address("laser"), client_name="alice@bench")
    c = laser.connection
    assert c.daemon_name == "test" and c.client_name == "alice@bench"
    assert len(c.session_token) == 32 and c.lease == 10.0 and not c.resumed
    assert c.server_version
    assert c.address == "lab://127.0.0.1:%d" % sim_daemon.port
    assert "@" in labhost.default_client_name()
