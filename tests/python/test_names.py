"""Finding services by name: a real nameserver (`labhost ns`) and a daemon that registers its
services with it by itself (host.json "register_with"); labhost.locate, names, lookup."""

import shutil
import socket
import tempfile
import time

import pytest

import labhost
from daemon_process import DaemonProcess, NameserverProcess, write_secret_file

REGISTER_TIMEOUT = 15.0  # registration is asynchronous (a retry loop inside the daemon)
POLL_INTERVAL = 0.02

SERVICES = {
    "laser": {"driver": "sim_laser", "description": "Tunable laser",
              "metadata": {"room": "B12", "kind": "source", "min_nm": 1500, "max_nm": 1630.0}},
    "laser_aux": {"driver": "sim_laser", "description": "Second laser",
                  "metadata": {"room": "C3", "kind": "source"}},
    "stage": {"driver": "sim_stage", "params": {"speed_mm_s": 1000.0},
              "metadata": {"room": "B12", "kind": "motion"}},
    "powermeter": {"driver": "sim_powermeter", "params": {"seed": 7}},
}


def wait_for_names(ns, expected, present=True, **options):
    """Polls the nameserver (bounded) until every name of `expected` is registered (or, with
    present=False, none is). The records then."""
    deadline = time.monotonic() + REGISTER_TIMEOUT
    while True:
        records = labhost.names(ns, **options)
        found = {r.name for r in records}
        if (set(expected) <= found) if present else not (set(expected) & found):
            return records
        if time.monotonic() > deadline:
            raise AssertionError("after %g s the nameserver %s has %s, expected %s %s"
                                 % (REGISTER_TIMEOUT, ns, sorted(found),
                                    "" if present else "none of", sorted(expected)))
        time.sleep(POLL_INTERVAL)


@pytest.fixture(scope="module")
def nameserver():
    ns = NameserverProcess()
    yield ns
    ns.stop()


@pytest.fixture(scope="module")
def registered(nameserver):
    """A daemon whose services are registered on `nameserver`; yields the daemon."""
    d = DaemonProcess(SERVICES, host_keys={"register_with": [nameserver.endpoint]})
    wait_for_names(nameserver.endpoint, SERVICES)
    yield d
    d.stop()


def test_names_lists_every_registered_service_with_its_metadata(nameserver, registered):
    records = labhost.names(nameserver.endpoint)
    assert [r.name for r in records] == ["laser", "laser_aux", "powermeter", "stage"]
    laser = records[0]
    assert isinstance(laser, labhost.NameRecord)
    assert laser.address == registered.address("laser")
    assert laser.owner.startswith("daemon test@")
    assert laser.metadata == {"daemon": "test", "driver": "sim_laser", "description": "Tunable laser",
                              "room": "B12", "kind": "source", "min_nm": 1500, "max_nm": 1630.0}
    meter = {r.name: r for r in records}["powermeter"]
    assert meter.metadata == {"daemon": "test", "driver": "sim_powermeter", "description": ""}
    assert labhost.names("lab://" + nameserver.endpoint) == records  # either form of address


def test_names_filters_by_prefix(nameserver, registered):
    assert [r.name for r in labhost.names(nameserver.endpoint, prefix="laser")] == ["laser", "laser_aux"]
    assert [r.name for r in labhost.names(nameserver.endpoint, "st")] == ["stage"]
    assert labhost.names(nameserver.endpoint, prefix="nothing") == []


def test_names_filters_by_metadata(nameserver, registered):
    def names(**filters):
        return [r.name for r in labhost.names(nameserver.endpoint, **filters)]

    assert names(metadata={"room": "B12"}) == ["laser", "stage"]
    assert names(metadata={"room": "B12", "kind": "motion"}) == ["stage"]
    assert names(metadata={"driver": "sim_laser"}) == ["laser", "laser_aux"]
    assert names(prefix="laser", metadata={"room": "C3"}) == ["laser_aux"]
    assert names(metadata={"min_nm": 1500}) == ["laser"]
    assert names(metadata={"min_nm": 1500.0}) == []  # values compare with their type
    assert names(metadata={"room": "nowhere"}) == []
    assert names(metadata={}) == names()


def test_locate_connects_to_the_named_service(nameserver, registered, connect):
    laser = labhost.locate("laser", ns=nameserver.endpoint, timeout=60, client_name="locator@test")
    try:
        assert isinstance(laser, labhost.ServiceProxy)
        assert laser.connection.address == registered.address()
        assert laser.connection.client_name == "locator@test"
        assert laser.wavelength() == 1550.0
        laser.set_wavelength(1561.0)
        assert connect(registered.address("laser")).wavelength() == 1561.0  # the same laser
        laser.set_wavelength(1550.0)
    finally:
        laser.close()
    with labhost.locate("stage", "lab://" + nameserver.endpoint, timeout=60) as stage:
        assert stage.describe()["driver"] == "sim_stage"


def test_lookup_gives_one_record(nameserver, registered):
    record = labhost.lookup("stage", nameserver.endpoint)
    assert record == {r.name: r for r in labhost.names(nameserver.endpoint)}["stage"]
    with record.connect(timeout=60) as stage:
        assert stage.describe()["name"] == "stage"


def test_an_unknown_name_is_no_such_name(nameserver, registered):
    with pytest.raises(labhost.NoSuchNameError, match='no name "nobody"') as e:
        labhost.locate("nobody", ns=nameserver.endpoint)
    assert (e.value.code, e.value.name) == (41, "no_such_name")
    with pytest.raises(labhost.NoSuchNameError):
        labhost.lookup("lase", nameserver.endpoint)  # names are exact; prefixes are for names()


def test_LABHOST_NS_is_the_default_nameserver(nameserver, registered, monkeypatch):
    assert labhost.default_nameserver() == "127.0.0.1:7700"
    monkeypatch.setenv("LABHOST_NS", nameserver.endpoint)
    assert labhost.default_nameserver() == nameserver.endpoint
    assert [r.name for r in labhost.names(prefix="laser")] == ["laser", "laser_aux"]
    with labhost.locate("laser", timeout=60) as laser:
        assert laser.wavelength() == 1550.0
    monkeypatch.setenv("LABHOST_NS", "lab://" + nameserver.endpoint)
    assert labhost.lookup("stage").address == registered.address("stage")


def test_bad_nameserver_addresses(monkeypatch):
    with pytest.raises(labhost.BadAddressError):
        labhost.names("no-port")
    with pytest.raises(labhost.BadAddressError, match="a nameserver is HOST:PORT"):
        labhost.locate("laser", ns="lab://127.0.0.1:7700/laser")
    with pytest.raises(TypeError):
        labhost.names("127.0.0.1:7700", metadata=["not", "a", "dict"])
    with socket.socket() as s:  # a port nobody listens on (loopback)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(labhost.ConnectionLostError, match="cannot connect"):
        labhost.names("127.0.0.1:%d" % port)


def test_names_go_when_their_daemon_stops(nameserver):
    d = DaemonProcess({"short_lived": {"driver": "test_echo"}},
                      host_keys={"register_with": [nameserver.endpoint]})
    try:
        wait_for_names(nameserver.endpoint, ["short_lived"])
    finally:
        d.stop()  # the registrar says goodbye: its names go with its session
    wait_for_names(nameserver.endpoint, ["short_lived"], present=False)
    with pytest.raises(labhost.NoSuchNameError):
        labhost.lookup("short_lived", nameserver.endpoint)


def test_a_nameserver_and_daemon_that_require_a_secret(monkeypatch):
    folder = tempfile.mkdtemp(prefix="labhost-pytest-ns-")
    started = []
    try:
        secret_file = write_secret_file(folder, "ns-and-daemon-secret")
        ns = NameserverProcess(secret_file=secret_file)
        started.append(ns)
        d = DaemonProcess({"secure_laser": {"driver": "sim_laser"}},
                          host_keys={"register_with": [ns.endpoint], "auth": {"secret_file": secret_file}})
        started.append(d)
        # The daemon registers with its own secret; clients need it for both.
        wait_for_names(ns.endpoint, ["secure_laser"], secret="ns-and-daemon-secret")
        with pytest.raises(labhost.AuthFailedError, match="requires a secret"):
            labhost.names(ns.endpoint)
        with labhost.locate("secure_laser", ns.endpoint, secret="ns-and-daemon-secret", timeout=60) as laser:
            assert laser.wavelength() == 1550.0
        monkeypatch.setenv("LABHOST_SECRET_FILE", secret_file)
        with labhost.locate("secure_laser", ns.endpoint, timeout=60) as laser:
            assert laser.wavelength() == 1550.0
    finally:
        for p in reversed(started):
            p.stop()
        shutil.rmtree(folder, ignore_errors=True)
