"""Several hosts, one lab: a nameserver host, lab hosts A and B, and client machines, each a
network namespace on a bridge (netlab.py), each host running real `labhost up` processes on
its own address, the clients real labctl and Python client processes.

Every wait polls a condition until a deadline (netlab.wait_until, WAIT_S = 60 s at most);
the nameserver's lease is NS_LEASE_S (1.5 s), the daemons' client lease DAEMON_LEASE_S (2 s).
The times measured (names going, names coming back) are printed: `pytest -s` shows them.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import netlab
from netlab import WAIT_S, stop, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


def call(host, *args, **kwargs):
    """labctl on `host`; the CompletedProcess, asserted to have succeeded."""
    p = host.labctl(*args, **kwargs)
    assert p.returncode == 0, "labctl %s on %s failed (%d): %s%s" % (
        " ".join(args), host.role, p.returncode, p.stdout, p.stderr)
    return p


def value_of(host, *args, **kwargs):
    """labctl --json call ..., its result as a Python value."""
    return json.loads(call(host, "--json", "call", *args, **kwargs).stdout)


def locks(host, address):
    """{service: report} from `labctl --json locks ADDRESS` on `host`."""
    return {r["service"]: r for r in json.loads(call(host, "--json", "locks", address).stdout)}


def report(what, seconds):
    print("multihost timing: %s: %.2f s" % (what, seconds))


# ------------------------------------------------------------------------- 2. names

def test_names_of_both_hosts_are_listed_with_their_addresses(lab):
    text = call(lab.client, "ls").stdout
    for name, address in lab.expected_names().items():
        line = [l for l in text.splitlines() if l.split()[:1] == [name]]
        assert line, "labctl ls does not list %s:\n%s" % (name, text)
        assert line[0].split()[1] == address, line[0]
    assert "Tunable laser on host A" in text and "Tunable laser on host B" in text, text

    listed = json.loads(call(lab.client, "--json", "ls").stdout)
    by_name = {n["name"]: n for n in listed}
    assert {n: e["address"] for n, e in by_name.items()} == lab.expected_names()
    assert by_name["laser_a"]["metadata"]["daemon"] == "main"
    assert by_name["laser_a"]["metadata"]["driver"] == "sim_laser"
    assert by_name["camera_b"]["metadata"]["daemon"] == "camera"
    assert by_name["camera_b"]["metadata"]["driver"] == "sim_camera"

    # A prefix lists the names of one kind across both hosts.
    lasers = [line.split()[0] for line in call(lab.client, "ls", "laser").stdout.splitlines()]
    assert lasers == ["laser_a", "laser_b"]


def test_calls_by_name_reach_the_right_host(lab):
    # Each host's laser has its own wavelength (host.json params): the answer tells which
    # host served the call.
    assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]
    assert value_of(lab.client, "laser_b", "wavelength") == lab.wavelength["b"]

    call(lab.client, "call", "laser_b", "set_wavelength", "1600.25")
    assert value_of(lab.client2, "laser_b", "wavelength") == 1600.25      # another machine sees it
    assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]  # A untouched
    call(lab.client, "call", "laser_b", "set_wavelength", str(lab.wavelength["b"]))

    # Other instruments and the camera daemon, by name, on both hosts.
    call(lab.client, "call", "stage_a", "move_to", "5.0")
    assert value_of(lab.client, "stage_a", "position") == pytest.approx(5.0)
    for name in ("powermeter_a", "powermeter_b"):
        assert isinstance(value_of(lab.client, name, "read"), float)
    describe = json.loads(call(lab.client, "--json", "describe", "lab://%s:7702" % lab.b.ip).stdout)
    assert describe["daemon"] == "camera"
    assert [s["name"] for s in describe["services"]] == ["camera_b"]
    assert all(s["state"] == "ready" for s in describe["services"])

    # The same by address, from the second client machine.
    pong = call(lab.client2, "ping", "lab://%s:7701" % lab.a.ip).stdout
    assert pong.startswith("pong from main"), pong


def test_the_lab_secret_is_required_across_the_network(lab):
    """Listening off loopback is allowed because of auth: a client without the secret is
    refused by the nameserver and by each host's daemons."""
    env = {k: v for k, v in lab.client.client_env().items() if not k.startswith("LABHOST_SECRET")}
    for target in (["ls"], ["call", "lab://%s:7701/laser_a" % lab.a.ip, "wavelength"],
                   ["call", "lab://%s:7701/laser_b" % lab.b.ip, "wavelength"]):
        argv = lab.client.exec_argv([netlab.binary("labctl"), "--ns", lab.ns_endpoint, "--timeout", "5"] + target)
        p = netlab.run(argv, check=False, env=env)
        assert p.returncode == 1 and "auth_failed" in (p.stdout + p.stderr), (target, p.stdout, p.stderr)


def test_python_client_locates_and_calls_both_hosts(lab):
    p = netlab.run(lab.client.exec_argv([sys.executable, os.path.join(HERE, "py_client.py"), "calls",
                                         "laser_a", "laser_b"]),
                   check=True, env=lab.client.client_env())
    out = json.loads(p.stdout)
    assert out["names"] == lab.expected_names()
    assert out["calls"] == {"laser_a": lab.wavelength["a"], "laser_b": lab.wavelength["b"]}


# --------------------------------------------------------------- 3. a host's power cut

def test_power_cut_of_a_host_drops_its_names_after_the_lease_and_they_come_back(lab):
    everything, only_b = lab.expected_names(), lab.expected_names(("b",))
    assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]
    ns_mark = lab.ns.log_mark()

    start = time.monotonic()
    lab.a.power_cut()   # link down first, then SIGKILL of labhost up and its daemons
    cut = time.monotonic() - start
    gone = lab.wait_names(only_b, "the names of A to go and those of B to stay") + cut
    report("host A's names gone after its power cut (lease %.1f s)" % netlab.NS_LEASE_S, gone)
    # Nothing left A (no FIN, no RST): its sessions with the nameserver ended by the lease,
    # not by a closed connection, which would have removed the names at once.
    wait_until(lambda: lab.ns.log_since(ns_mark).count("removed: no sign of life for the lease time") >= 2,
               "the nameserver to log that A's two sessions ended by their lease")
    assert gone >= netlab.NS_LEASE_S - 0.6, "A's names went after %.2f s, before the lease" % gone

    # B serves on; A is off and says so.
    assert value_of(lab.client, "laser_b", "wavelength") == lab.wavelength["b"]
    p = lab.client.labctl("call", "laser_a", "wavelength")
    assert p.returncode == 1 and "no_such_name" in p.stdout + p.stderr, (p.stdout, p.stderr)

    start = time.monotonic()
    lab.a.power_on()    # link up, `labhost up` on the same host.json
    back = lab.wait_names(everything, "A's names to come back, on the same addresses")
    report("host A's names back after power-on", back)
    assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]
    assert value_of(lab.client2, "laser_b", "wavelength") == lab.wavelength["b"]


def registrations(log):
    """How many times daemons logged that all their names are registered."""
    return len(re.findall(r"registered \d+ name\(s\) with nameserver", log))


def test_quick_power_cycle_names_come_back_after_the_old_lease(lab):
    """A is back before the nameserver has noticed that it went: the old sessions' names are
    still live, so the new daemons get name_taken and retry (every 2 s) until the lease
    drops the old ones; then every name is registered by the new daemons."""
    everything = lab.expected_names()
    a_mark, ns_mark = lab.a.log_mark(), lab.ns.log_mark()
    start = time.monotonic()
    lab.a.power_cut()
    lab.a.power_on()
    wait_until(lambda: registrations(lab.a.log_since(a_mark)) >= 2,
               "both daemons of A to register all their names again")
    report("host A's names registered again after a quick power cycle", time.monotonic() - start)
    log = lab.a.log_since(a_mark)
    assert '"laser_a" is registered by daemon main' in log, log      # name_taken, retried
    wait_until(lambda: "removed: no sign of life for the lease time" in lab.ns.log_since(ns_mark),
               "the nameserver to log that A's old sessions ended by their lease")
    assert lab.names() == everything
    assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]


def test_a_name_offered_by_two_hosts_fails_over_and_back(lab):
    """B runs a spare daemon that offers "laser_a" too. The name stays A's (name_taken, the
    spare retries every 2 s); when A loses power the spare takes it once A's lease passes;
    when A is back, A's daemon waits in turn; when the spare stops, A gets it back."""
    a_laser = "lab://%s:7701/laser_a" % lab.a.ip
    spare_port = 7703
    spare_laser = "lab://%s:%d/laser_a" % (lab.b.ip, spare_port)
    config = {
        "plugin_dir": lab.b.plugin_dir,
        "auth": {"secret_file": lab.b.secret_file},
        "register_with": [lab.ns_endpoint],
        "daemons": {"spare": {"address": "%s:%d" % (lab.b.ip, spare_port), "lease_s": netlab.DAEMON_LEASE_S,
                              "services": {"laser_a": {"driver": "sim_laser", "description": "Spare laser on host B",
                                                       "params": {"wavelength_nm": 1601.0}}}}},
    }
    config_path = os.path.join(lab.b.folder, "spare.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    spare_log = os.path.join(lab.b.folder, "spare.log")
    with open(spare_log, "ab") as log:
        spare = lab.b.popen([netlab.binary("labhost"), "daemon", "--name", "spare", "--config", config_path,
                             "--log-level", "debug"], stdout=subprocess.PIPE, stderr=log)

    def spare_says():
        with open(spare_log, errors="replace") as f:
            return f.read()

    try:
        line = netlab.read_line(spare)
        assert line == "labhost daemon spare listening on %s:%d" % (lab.b.ip, spare_port), (line, spare_says())
        wait_until(lambda: '"laser_a" is registered by daemon main' in spare_says(),
                   "the spare to be refused laser_a (name_taken)")
        assert lab.names()["laser_a"] == a_laser

        a_mark = lab.a.log_mark()
        start = time.monotonic()
        lab.a.power_cut()
        wait_until(lambda: (lab.names() or {}).get("laser_a") == spare_laser, "the spare on B to take laser_a")
        report("laser_a failed over to host B after A's power cut", time.monotonic() - start)
        assert value_of(lab.client, "laser_a", "wavelength") == 1601.0

        lab.a.power_on()
        want = dict(lab.expected_names(), laser_a=spare_laser)
        lab.wait_names(want, "A's other names back, laser_a still the spare's")
        wait_until(lambda: '"laser_a" is registered by daemon spare' in lab.a.log_since(a_mark),
                   "A's daemon main to be refused laser_a (name_taken)")

        start = time.monotonic()
        assert stop(spare) == 0   # SIGTERM: a graceful stop, goodbye to the nameserver
        lab.wait_names(lab.expected_names(), "laser_a back to host A")
        report("laser_a back to host A after the spare stopped", time.monotonic() - start)
        assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]
    finally:
        if spare.poll() is None:
            spare.kill()
        spare.wait()
        spare.stdout.close()


# --------------------------------------------------------- 4. the nameserver's loss and return

def daemon_pids(lab):
    return {h.role: sorted(h.children_of_up()) for h in (lab.a, lab.b)}


def test_nameserver_process_killed_and_restarted_by_labhost_up(lab):
    everything = lab.expected_names()
    before = daemon_pids(lab)
    (ns_pid,) = lab.ns.children_of_up()
    assert b"ns" in lab.ns.cmdline(ns_pid)[1:2], lab.ns.cmdline(ns_pid)
    start = time.monotonic()
    os.kill(ns_pid, signal.SIGKILL)
    wait_until(lambda: lab.names() != everything, "the names to go with the nameserver", interval=0.02)
    lab.wait_names(everything, "every name registered again on the restarted nameserver")
    report("names back after SIGKILL of labhost ns (labhost up restarts it)", time.monotonic() - start)
    assert daemon_pids(lab) == before, "the daemons were restarted: they should have registered again by themselves"
    assert value_of(lab.client, "laser_a", "wavelength") == lab.wavelength["a"]
    assert value_of(lab.client, "laser_b", "wavelength") == lab.wavelength["b"]


def test_nameserver_host_labhost_up_killed_and_started_again(lab):
    everything = lab.expected_names()
    before = daemon_pids(lab)
    marks = {h.role: h.log_mark() for h in (lab.a, lab.b)}
    lab.ns.kill_everything()   # SIGKILL of labhost up and its labhost ns
    assert lab.names() is None, "the nameserver still answers"
    # The instruments still serve at their addresses meanwhile.
    assert value_of(lab.client, "lab://%s:7701/laser_b" % lab.b.ip, "wavelength") == lab.wavelength["b"]
    start = time.monotonic()
    lab.ns.start_up()
    lab.wait_names(everything, "every name registered again on the new nameserver")
    report("names back after labhost up of the nameserver host started again", time.monotonic() - start)
    assert daemon_pids(lab) == before
    for h in (lab.a, lab.b):
        log = h.log_since(marks[h.role])
        assert "unreachable" in log and registrations(log) >= 2, log


def test_nameserver_host_power_cut(lab):
    """The nameserver host loses power: the daemons' sessions with it are half-open, and they
    notice by their own pings' timeouts; when it boots again they register by themselves."""
    everything = lab.expected_names()
    before = daemon_pids(lab)
    marks = {h.role: h.log_mark() for h in (lab.a, lab.b)}
    start = time.monotonic()
    lab.ns.power_cut()
    # Each daemon of A and B (two each) notices that the nameserver is gone.
    for h in (lab.a, lab.b):
        wait_until(lambda: h.log_since(marks[h.role]).count("unreachable") >= 2,
                   "the daemons of %s to find the nameserver unreachable" % h.role)
    report("daemons noticed the nameserver host's power cut", time.monotonic() - start)
    start = time.monotonic()
    lab.ns.power_on()
    lab.wait_names(everything, "every name registered again once the nameserver host is back")
    report("names back after the nameserver host's power-on", time.monotonic() - start)
    assert daemon_pids(lab) == before


# --------------------------------------------------------------------- 5. locks across hosts

def start_hold(host, name, client_name, *options):
    p = host.popen([netlab.binary("labctl"), "--ns", host.lab.ns_endpoint, "--client-name", client_name]
                   + list(options) + ["lock", name, "--hold"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = netlab.read_line(p)
    if not line.startswith("locked "):
        p.kill()
        p.wait()
        raise AssertionError("labctl lock %s --hold did not lock (%r): %s" % (name, line, p.stderr.read().decode()))
    return p, line


def test_one_client_locks_a_service_on_each_host(lab):
    addr_a, addr_b = "lab://%s:7701" % lab.a.ip, "lab://%s:7701" % lab.b.ip
    holds = []
    try:
        for name in ("laser_a", "laser_b"):
            holds.append(start_hold(lab.client, name, "alice"))
        assert holds[0][1] == "locked %s/laser_a as alice; holding until terminated" % addr_a
        assert holds[1][1] == "locked %s/laser_b as alice; holding until terminated" % addr_b

        # Another machine sees each lock held by alice, from the client machine's address.
        for address, service, (process, _) in ((addr_a, "laser_a", holds[0]), (addr_b, "laser_b", holds[1])):
            report_ = locks(lab.client2, address)
            held = report_[service]
            assert held["locked"] and not held["yours"], held
            assert held["holder"]["client_name"] == "alice", held
            assert held["holder"]["pid"] == process.pid, held
            assert held["holder"]["address"].startswith(lab.client.ip + ":"), held
            assert not report_[service.replace("laser", "stage")]["locked"]
        text = call(lab.client2, "locks", addr_a).stdout
        assert "laser_a: locked by alice (pid %d, %s:" % (holds[0][0].pid, lab.client.ip) in text, text

        # Meanwhile the other machine's calls to the locked lasers are refused.
        for name in ("laser_a", "laser_b"):
            p = lab.client2.labctl("call", name, "set_power", "2.0")
            assert p.returncode == 1 and "locked" in p.stdout + p.stderr, (p.stdout, p.stderr)

        # Released (SIGTERM: labctl unlocks and exits 0): free on both hosts.
        for process, _ in holds:
            assert stop(process) == 0
        for address, service in ((addr_a, "laser_a"), (addr_b, "laser_b")):
            assert not locks(lab.client2, address)[service]["locked"]
        call(lab.client2, "call", "laser_a", "set_power", "2.0")
        call(lab.client2, "call", "laser_b", "set_power", "2.0")
    finally:
        for process, _ in holds:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_python_client_locks_a_service_on_each_host(lab):
    p = lab.client.popen([sys.executable, os.path.join(HERE, "py_client.py"), "hold", "stage_a", "stage_b"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = netlab.read_line(p)
        if not line:
            p.kill()
            p.wait()
            raise AssertionError("py_client.py hold said nothing: %s" % p.stderr.read().decode())
        assert json.loads(line) == {"locked": {"stage_a": ["bob", True], "stage_b": ["bob", True]}}
        for host, service in ((lab.a, "stage_a"), (lab.b, "stage_b")):
            held = locks(lab.client2, "lab://%s:7701/%s" % (host.ip, service))[service]
            assert held["locked"] and held["holder"]["client_name"] == "bob", held
            assert held["holder"]["pid"] == p.pid, held
            assert held["holder"]["address"].startswith(lab.client.ip + ":"), held
        p.stdin.write(b"release\n")
        p.stdin.flush()
        assert json.loads(netlab.read_line(p)) == {"released": ["stage_a", "stage_b"]}
        assert p.wait(timeout=WAIT_S) == 0
        for host, service in ((lab.a, "stage_a"), (lab.b, "stage_b")):
            assert not locks(lab.client2, "lab://%s:7701/%s" % (host.ip, service))[service]["locked"]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_lock_ends_when_its_holder_machine_loses_power(lab):
    """The client machine goes off while it holds a lock on A and on B: each daemon releases
    it one lease (DAEMON_LEASE_S) after the client's last sign of life."""
    hold_a, _ = start_hold(lab.client, "powermeter_a", "carol")
    hold_b, _ = start_hold(lab.client, "powermeter_b", "carol")
    try:
        for host, service in ((lab.a, "powermeter_a"), (lab.b, "powermeter_b")):
            assert locks(lab.client2, "lab://%s:7701/%s" % (host.ip, service))[service]["locked"]
        start = time.monotonic()
        lab.client.power_cut()  # link down, labctl processes SIGKILLed
        for host, service in ((lab.a, "powermeter_a"), (lab.b, "powermeter_b")):
            wait_until(lambda: not locks(lab.client2, "lab://%s:7701/%s" % (host.ip, service))[service]["locked"],
                       "%s's lock to end after its holder's power cut" % service)
        freed = time.monotonic() - start
        report("locks freed after the holder machine's power cut (lease %.1f s)" % netlab.DAEMON_LEASE_S, freed)
        assert freed >= netlab.DAEMON_LEASE_S - 0.8, "freed after %.2f s, before the lease" % freed
    finally:
        for p in (hold_a, hold_b):
            if p.poll() is None:
                p.kill()
            p.wait()
        lab.client.discard_tcp_state()
        lab.client.link("up")


# ------------------------------------------- a lock holder when the daemon's host loses power

def test_lock_holder_with_a_timeout_notices_the_daemon_host_power_cut(lab):
    """labctl lock --hold looks once a second whether the lock is still its own; with
    --timeout, that look fails when the daemon's host is gone, and it says so."""
    hold, _ = start_hold(lab.client, "laser_a", "erin", "--timeout", "2")
    try:
        start = time.monotonic()
        lab.a.power_cut()
        status = hold.wait(timeout=WAIT_S)
        report("labctl --timeout 2 lock --hold exited after host A's power cut", time.monotonic() - start)
        stderr = hold.stderr.read().decode()
        assert status == 1 and "lost the lock on lab://%s:7701/laser_a" % lab.a.ip in stderr, (status, stderr)
    finally:
        if hold.poll() is None:
            hold.kill()
        hold.wait()


class LockStillHeld(AssertionError):
    """labctl lock --hold did not notice in time that its lock is gone."""


def test_lock_holder_notices_the_daemon_host_power_cut(lab):
    """Without a timeout of its own, labctl lock --hold notices within about a lease that the
    daemon's host is gone (no FIN ever came): its heartbeat gets no pong within the lease."""
    hold, _ = start_hold(lab.client, "laser_a", "erin")   # labctl's defaults: no --timeout
    bound = netlab.DAEMON_LEASE_S + 8.0
    try:
        lab.a.power_cut()
        try:
            status = hold.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            raise LockStillHeld("labctl lock laser_a --hold still says it holds the lock %.0f s after host A lost power "
                        "(the daemon's lease is %.1f s)" % (bound, netlab.DAEMON_LEASE_S))
        stderr = hold.stderr.read().decode()
        assert status == 1 and "lost the lock" in stderr, (status, stderr)
    finally:
        if hold.poll() is None:
            hold.kill()
        hold.wait()
