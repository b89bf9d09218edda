"""LAN discovery without configuration: daemons announce themselves as _labhost._tcp through
their host's Avahi daemon (DNS-SD over mDNS); `labctl ls --lan` (through the client's Avahi)
and labhost.discover() (its own mDNS queries, no Avahi) list them. Real processes in the
network namespaces of lanlab.LanLab: each host with a D-Bus system bus and an avahi-daemon of
its own where it needs one.

Every wait polls a condition until a deadline (netlab.wait_until, 60 s at most); the times
measured (a service seen, a service gone) are printed: `pytest -s` shows them. The DNS parsing
tests at the end need neither root nor the lab.
"""

import atexit
import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

import lanlab
import netlab
from lanlab import FULL_WAIT_S, labctl_lan, python_discover, wait_listed
from netlab import binary, run, wait_until

sys.path.insert(0, netlab.CLIENT_DIR)
import labhost.discovery as discovery  # noqa: E402


def report(what, seconds):
    print("lan discovery timing: %s: %.2f s" % (what, seconds))


@pytest.fixture(scope="module")
def lan_lab():
    problem = lanlab.preflight()
    if problem:
        pytest.fail(problem, pytrace=False)
    netlab.remove_stale(lanlab.PREFIX)
    lab = lanlab.LanLab()
    atexit.register(lab.destroy_quietly)
    start = time.monotonic()
    try:
        lab.make()
        lab.restore()
    except BaseException:
        print(lab.logs())
        lab.destroy_quietly()
        raise
    report("lab built, every daemon serving", time.monotonic() - start)
    yield lab
    lab.destroy()


@pytest.fixture
def lan(lan_lab):
    lan_lab.restore()
    yield lan_lab
    print(lan_lab.logs())


def labhost_version():
    return run([binary("labhost"), "version"]).stdout.split()[-1]


def expected(lab):
    """What the LAN should say of hosts A and B: {instance name: entry}."""
    a, b = lab.a, lab.b
    version = labhost_version()
    return {
        "main on lab-a": {"host": "lab-a.local", "address": a.ip, "port": 7701, "daemon": "main",
                          "services": ["laser_a", "stage_a"], "tls": False, "auth": True, "version": version},
        "camera on lab-a": {"host": "lab-a.local", "address": a.ip, "port": 7702, "daemon": "camera",
                            "services": ["camera_a"], "tls": False, "auth": True, "version": version},
        "main on lab-b": {"host": "lab-b.local", "address": b.ip, "port": 7701, "daemon": "main",
                          "services": ["laser_b", "powermeter_b"], "tls": True, "auth": True, "version": version},
    }


def trimmed(listing):
    keys = ("host", "address", "port", "daemon", "services", "tls", "auth", "version")
    return {name: {k: entry[k] for k in keys} for name, entry in listing.items()}


def of_host(listing, avahi_name):
    return sorted(name for name in listing if name.endswith(" on " + avahi_name) or " on %s #" % avahi_name in name)


# --------------------------------------------------------------------- listing the LAN

def test_labctl_ls_lan_lists_the_daemons_of_both_hosts(lan):
    want = expected(lan)
    start = time.monotonic()
    listing = wait_listed(lan.client, lambda l: set(want) <= set(l), "the daemons of A and B on the LAN")
    report("labctl ls --lan lists A and B", time.monotonic() - start)
    listing = labctl_lan(lan.client)  # one whole listing, with the full wait
    assert trimmed(listing) == want, json.dumps(listing, indent=1)
    assert all(e["interface"] == "eth0" for e in listing.values())
    # Not listed: A's loopback daemon (the LAN cannot reach it), C (announce off), D (no Avahi).
    assert not any(e["daemon"] == "local" for e in listing.values())
    assert "LAN discovery: daemon local listens on loopback only (127.0.0.1): not announced" in lan.a.log_since(0)

    text = run(lan.client.exec_argv([binary("labctl"), "ls", "--lan", "--wait", str(FULL_WAIT_S)]),
               env=lan.client.client_env()).stdout
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert set(lines) == set(want), text
    assert lines["main on lab-a"] == "main on lab-a  lab-a.local  %s:7701  laser_a,stage_a  secret" % lan.a.ip
    assert lines["camera on lab-a"] == "camera on lab-a  lab-a.local  %s:7702  camera_a  secret" % lan.a.ip
    assert lines["main on lab-b"] == "main on lab-b  lab-b.local  %s:7701  laser_b,powermeter_b  TLS  secret" % lan.b.ip

    # The listed addresses serve: describe each daemon there (secret, and the CA for B's TLS).
    for name, entry in want.items():
        options = ["--tls-ca", lan.b.tls_cert] if entry["tls"] else []
        p = lan.client.labctl(*(options + ["--json", "describe", "lab://%s:%d" % (entry["address"], entry["port"])]))
        assert p.returncode == 0, (name, p.stdout, p.stderr)
        assert [s["name"] for s in json.loads(p.stdout)["services"]] == entry["services"]


def test_python_discover_lists_the_same_without_avahi(lan):
    """labhost.discover() on the machine without D-Bus or Avahi (cl2), and on the one with
    Avahi (cl), finds what labctl finds; an entry's lab_address() and connect() reach it."""
    want = expected(lan)
    wait_listed(lan.client, lambda l: set(want) <= set(l), "the daemons of A and B on the LAN")
    for host in (lan.client2, lan.client):
        found = python_discover(host)
        assert trimmed(found) == want, (host.role, json.dumps(found, indent=1))
        assert found["main on lab-a"]["lab_address"] == "lab://%s:7701" % lan.a.ip
    assert labctl_lan(lan.client).keys() == python_discover(lan.client2).keys()

    p = run(lan.client2.exec_argv([sys.executable, os.path.join(lanlab.HERE, "py_client.py"), "discover",
                                   str(FULL_WAIT_S), "main on lab-a", "laser_a"]), env=lan.client2.client_env())
    assert json.loads(p.stdout)["wavelength"] == 1550.0
    p = run(lan.client2.exec_argv([sys.executable, os.path.join(lanlab.HERE, "py_client.py"), "discover",
                                   str(FULL_WAIT_S), "main on lab-b", "laser_b", lan.b.tls_cert]),
            env=lan.client2.client_env())
    assert json.loads(p.stdout)["wavelength"] == 1560.5  # over TLS, found on the LAN


def test_a_host_whose_daemons_stop_disappears_and_comes_back(lan):
    want = expected(lan)
    wait_listed(lan.client, lambda l: set(want) <= set(l), "the daemons of A and B on the LAN")
    start = time.monotonic()
    run(lan.a.exec_argv([binary("labhost"), "down", "--config", lan.a.config]), env=lan.a.host_env())
    lan.a.up.wait(timeout=netlab.WAIT_S)
    down = time.monotonic() - start
    listing = wait_listed(lan.client, lambda l: not of_host(l, "lab-a"), "A's daemons to leave the LAN")
    report("A's daemons gone from labctl ls --lan after labhost down (which took %.2f s)" % down,
           time.monotonic() - start)
    assert "main on lab-b" in listing  # B stays
    assert of_host(python_discover(lan.client2), "lab-a") == []
    # They went because they said goodbye (avahi-daemon withdraws at once), not because of a TTL.
    assert time.monotonic() - start < 30

    start = time.monotonic()
    lan.a.start_up()
    wait_listed(lan.client, lambda l: set(want) <= set(l), "A's daemons back on the LAN")
    report("A's daemons listed again after labhost up", time.monotonic() - start)


def test_a_host_with_lan_discovery_off_is_not_listed_until_reload_turns_it_on(lan):
    want = expected(lan)
    wait_listed(lan.client, lambda l: set(want) <= set(l), "the daemons of A and B on the LAN")
    # C serves, but says nothing on the LAN.
    p = lan.client.labctl("ping", "lab://%s:7701" % lan.c.ip)
    assert p.returncode == 0 and p.stdout.startswith("pong from main"), (p.stdout, p.stderr)
    assert "daemon main not announced (host.json lan_discovery.announce is false)" in lan.c.log_since(0)
    assert of_host(labctl_lan(lan.client), "lab-c") == []
    assert of_host(python_discover(lan.client2), "lab-c") == []

    # lan_discovery is part of the daemon's fingerprint: turning it on restarts the daemon, which
    # then announces itself; turning it off again withdraws it.
    for announce, want_listed in ((True, ["main on lab-c"]), (False, [])):
        lan.c.write_config(lanlab.single_daemon_config(lan.c, "laser_c", announce=announce))
        start = time.monotonic()
        p = run(lan.c.exec_argv([binary("labhost"), "reload", "--config", lan.c.config]), env=lan.c.host_env())
        assert "restarted: main" in p.stdout, p.stdout
        wait_listed(lan.client, lambda l: of_host(l, "lab-c") == want_listed,
                    "C's daemon %s the LAN" % ("on" if announce else "off"))
        report("C's daemon %s after labhost reload (announce %s)" % ("listed" if announce else "gone", announce),
               time.monotonic() - start)


def test_a_host_without_avahi_serves_and_says_lan_discovery_off(lan):
    # D has a system bus but no avahi-daemon: its daemon serves, and said so once.
    log = lan.d.log_since(0)
    assert ("LAN discovery off: no Avahi daemon (avahi-daemon is not running); announcing once it starts" in log), log
    p = lan.client.labctl("--json", "call", "lab://%s:7701/laser_d" % lan.d.ip, "wavelength")
    assert p.returncode == 0 and json.loads(p.stdout) == 1550.0, (p.stdout, p.stderr)

    # cl2 has no system bus at all: a daemon started there serves as well.
    folder = os.path.join(lan.client2.folder, "solo")
    os.makedirs(folder, exist_ok=True)
    if not os.path.isdir(lan.client2.plugin_dir):
        netlab.make_plugin_folder(lan.client2)
    config = os.path.join(folder, "host.json")
    with open(config, "w") as f:
        json.dump({"plugin_dir": lan.client2.plugin_dir, "insecure": True,
                   "daemons": {"solo": {"address": "%s:7701" % lan.client2.ip,
                                        "services": {"laser_x": {"driver": "sim_laser"}}}}}, f)
    log_path = os.path.join(folder, "solo.log")
    with open(log_path, "wb") as log:
        solo = lan.client2.popen([binary("labhost"), "daemon", "--name", "solo", "--config", config],
                                 stdout=subprocess.PIPE, stderr=log)
    try:
        line = netlab.read_line(solo)
        assert line == "labhost daemon solo listening on %s:7701" % lan.client2.ip, line
        said = lambda: open(log_path, errors="replace").read()
        wait_until(lambda: "LAN discovery off: no Avahi daemon (" in said(), "solo to say LAN discovery is off")
        assert ("LAN discovery off: no Avahi daemon (the system D-Bus at %s cannot be reached)"
                % lan.client2.dbus_address) in said(), said()
        p = lan.client.labctl("ping", "lab://%s:7701" % lan.client2.ip)
        assert p.returncode == 0 and p.stdout.startswith("pong from solo"), (p.stdout, p.stderr)
        assert netlab.stop(solo) == 0  # a graceful stop, nothing to withdraw
        assert said().count("LAN discovery off") == 1, said()
    finally:
        if solo.poll() is None:
            solo.kill()
        solo.wait()
        solo.stdout.close()

    # avahi-daemon starts on D later: the running daemon announces itself then (no restart);
    # when avahi-daemon stops, the daemon is withdrawn with everything Avahi announced.
    mark = lan.d.log_mark()
    pid_before = lan.d.children_of_up()
    start = time.monotonic()
    lan.d.start_avahi("lab-d")
    wait_listed(lan.client, lambda l: "main on lab-d" in l, "D's daemon on the LAN once Avahi runs there")
    report("D's daemon listed after avahi-daemon started on D", time.monotonic() - start)
    assert 'LAN discovery on: announced on the LAN as "main on lab-d"' in lan.d.log_since(mark)
    assert lan.d.children_of_up() == pid_before
    start = time.monotonic()
    lan.d.stop_avahi()
    wait_listed(lan.client, lambda l: "main on lab-d" not in l, "D's daemon gone with D's avahi-daemon")
    report("D's daemon gone after avahi-daemon stopped on D", time.monotonic() - start)
    wait_until(lambda: "avahi-daemon went away" in lan.d.log_since(mark), "D's daemon to notice Avahi went")


def test_labctl_ls_lan_without_avahi_fails_naming_avahi_daemon(lan):
    for host in (lan.client2, lan.d):  # no bus at all; a bus without avahi-daemon
        p = run(host.exec_argv([binary("labctl"), "ls", "--lan", "--wait", "0.2"]), check=False,
                env=host.client_env())
        assert p.returncode == 1, (host.role, p.returncode, p.stdout, p.stderr)
        assert p.stdout == ""
        assert "labctl: ls --lan: no Avahi daemon on this machine" in p.stderr, p.stderr
        assert "avahi-daemon" in p.stderr.split("machine", 1)[1], p.stderr


def test_two_daemons_of_one_name_on_one_host_get_distinct_names(lan):
    """A second labhost on host A (another host.json) also runs a daemon "main": Avahi refuses
    the name, and it announces itself as "main on lab-a #2"."""
    want = expected(lan)
    wait_listed(lan.client, lambda l: set(want) <= set(l), "the daemons of A and B on the LAN")
    config = os.path.join(lan.a.folder, "second.json")
    with open(config, "w") as f:
        json.dump({"plugin_dir": lan.a.plugin_dir, "auth": {"secret_file": lan.a.secret_file},
                   "daemons": {"main": {"address": "%s:7711" % lan.a.ip,
                                        "services": {"spare_a": {"driver": "sim_laser"}}}}}, f)
    log_path = os.path.join(lan.a.folder, "second.log")
    with open(log_path, "wb") as log:
        second = lan.a.popen([binary("labhost"), "daemon", "--name", "main", "--config", config],
                             stdout=subprocess.PIPE, stderr=log)
    try:
        assert netlab.read_line(second) == "labhost daemon main listening on %s:7711" % lan.a.ip
        listing = wait_listed(lan.client, lambda l: "main on lab-a #2" in l, "the second main on the LAN")
        assert listing["main on lab-a #2"]["port"] == 7711
        assert listing["main on lab-a #2"]["services"] == ["spare_a"]
        assert listing["main on lab-a"]["port"] == 7701
        said = open(log_path, errors="replace").read()
        assert 'the name "main on lab-a" is taken on this machine; announcing as "main on lab-a #2"' in said, said
        assert netlab.stop(second) == 0
        wait_listed(lan.client, lambda l: "main on lab-a #2" not in l and "main on lab-a" in l,
                    "the second main gone, the first still there")
    finally:
        if second.poll() is None:
            second.kill()
        second.wait()
        second.stdout.close()


def test_discover_asks_for_what_a_terse_responder_leaves_out(lan):
    """A responder that answers each question with that one record (names compressed): the
    PTR alone, then discover() asks for the SRV and TXT, then for the host's address."""
    responder = lanlab.start_fake_responder(lan)
    try:
        found = python_discover(lan.client2)
        assert trimmed({"fake on fk": found["fake on fk"]}) == {"fake on fk": {
            "host": "fk-host.local", "address": lan.fk.ip, "port": 7799, "daemon": "fake",
            "services": ["alpha", "beta"], "tls": False, "auth": True, "version": "9.9.9"}}
        assert set(expected(lan)) <= set(found)  # and the real ones beside it
    finally:
        responder.kill()
        responder.wait()
    answered = responder.stdout.read().decode()
    responder.stdout.close()
    for question in ("_labhost._tcp.local 12", "fake on fk._labhost._tcp.local 33",
                     "fake on fk._labhost._tcp.local 16", "fk-host.local 1"):
        assert "answered " + question in answered, answered


# ------------------------------------------------------------ host.json (no root needed)

def check(tmp_path, lan_discovery):
    config = tmp_path / "host.json"
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    config.write_text(json.dumps({"plugin_dir": str(plugins), "lan_discovery": lan_discovery, "daemons": {}}))
    return run([binary("labhost"), "check", "--config", str(config)], check=False)


def test_host_json_lan_discovery_is_validated(tmp_path):
    assert check(tmp_path, {"announce": False}).returncode == 0
    assert check(tmp_path, {}).returncode == 0
    for value, message in (({"announce": "no"}, "lan_discovery.announce: expected true or false"),
                           ({"announce": True, "browse": 1},
                            "lan_discovery.browse: unknown key (expected one of: announce)"),
                           ([], "lan_discovery: expected an object")):
        p = check(tmp_path, value)
        assert p.returncode == 3 and message in p.stderr, (value, p.returncode, p.stderr)


# ------------------------------------------- the DNS messages of discover() (no root needed)

def name(labels):
    return b"".join(bytes([len(l.encode())]) + l.encode() for l in labels) + b"\0"


def response(*records, question=None):
    """A response: records as (name bytes, type, ttl, rdata bytes)."""
    head = struct.pack("!HHHHHH", 0, 0x8400, 1 if question else 0, len(records), 0, 0)
    body = question or b""
    for owner, rtype, ttl, rdata in records:
        body += owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return head + body


def test_discovery_reads_compressed_names_txt_and_goodbyes():
    service = name(["_labhost", "_tcp", "local"])
    question = service + struct.pack("!HH", 12, 1)
    # Offsets: the header is 12 bytes, so the question's name is at 12 ("\xc0\x0c"), "local" at 12 + 14.
    instance = b"\x0bmain on lab\xc0\x0c"
    txt = b"".join(bytes([len(s)]) + s for s in (b"daemon=main", b"services=laser,stage", b"TLS=1", b"auth",
                                                   b"tls=0"))
    packet = response((b"\xc0\x0c", 12, 4500, instance),
                      (b"\x0bmain on lab\xc0\x0c", 33, 120, struct.pack("!HHH", 0, 0, 7701) + b"\x03lab\xc0\x1a"),
                      (b"\x0bmain on lab\xc0\x0c", 16, 4500, txt),
                      (b"\x03lab\xc0\x1a", 1, 120, socket.inet_aton("10.1.2.3")),
                      question=question)
    answers = discovery._Answers()
    answers.add_packet(packet)
    (d,) = answers.daemons()
    assert (d.name, d.host, d.address, d.port, d.daemon, d.services) == (
        "main on lab", "lab.local", "10.1.2.3", 7701, "main", ["laser", "stage"])
    assert d.tls and not d.auth  # keys compare without case, the first one counts; "auth" alone is not "1"
    assert d.lab_address("laser") == "lab://10.1.2.3:7701/laser"
    with pytest.raises(ValueError):
        d.lab_address("camera")
    assert answers.missing() == []

    # A goodbye (TTL 0) withdraws the instance.
    answers.add_packet(response((b"\xc0\x0c", 12, 0, instance), question=question))
    assert answers.daemons() == []

    # A PTR alone: discover() asks for SRV and TXT; an SRV without an address: for A.
    answers = discovery._Answers()
    answers.add_packet(response((service, 12, 4500, b"\x01x" + service)))
    assert sorted(q[1] for q in answers.missing()) == [16, 33]
    answers.add_packet(response((b"\x01x" + service, 33, 120, struct.pack("!HHH", 0, 0, 1) + name(["h", "local"]))))
    assert (("h", "local"), 1) in answers.missing()


def test_discovery_ignores_hostile_packets():
    answers = discovery._Answers()
    loop = struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c"  # a name that points at itself
    for packet in (b"", b"\x00" * 5, loop, loop + struct.pack("!HHIH", 12, 1, 10, 200),
                   response((b"\x05short", 12, 10, b"\xc0\xff"))):
        answers.add_packet(packet)
    assert answers.daemons() == [] and answers.instances == {}
    # An IPv6 address in brackets, for lab addresses.
    d = discovery.LanDaemon(name="x", host="h.local", address="fe80::1", port=7701)
    assert d.lab_address("s") == "lab://[fe80::1]:7701/s"
