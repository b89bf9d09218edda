"""The LAN discovery lab (test_lan_discovery.py): hosts on one bridge, most with a D-Bus
system bus and an Avahi daemon of their own, each in a network namespace (netlab.Network).

    switch  lhld<pid>-sw    a bridge br0, and one veth port per host
    a       lhld<pid>-a     10.78.0.11  Avahi "lab-a"; labhost up: main (10.78.0.11:7701), camera
                                        (0.0.0.0:7702), local (127.0.0.1:7709); auth
    b       lhld<pid>-b     10.78.0.12  Avahi "lab-b"; labhost up: main (10.78.0.12:7701); auth, TLS
    c       lhld<pid>-c     10.78.0.13  Avahi "lab-c"; labhost up: main; "lan_discovery": {"announce": false}
    d       lhld<pid>-d     10.78.0.14  D-Bus but no Avahi daemon; labhost up: main
    cl      lhld<pid>-cl    10.78.0.20  Avahi "client": labctl ls --lan
    cl2     lhld<pid>-cl2   10.78.0.21  neither D-Bus nor Avahi: labhost.discover(), labctl without Avahi
    fk      lhld<pid>-fk    10.78.0.30  fake_mdns_responder.py, an mDNS responder that answers one
                                        record per question

The multicast stays on the bridge: these namespaces have no route anywhere else.
"""

import json
import os
import subprocess
import sys

import netlab
from netlab import binary, run, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))

PREFIX = "lhld"
SUBNET = "10.78.0"
HOSTS = {"a": 11, "b": 12, "c": 13, "d": 14, "cl": 20, "cl2": 21, "fk": 30}
AVAHI_NAMES = {"a": "lab-a", "b": "lab-b", "c": "lab-c", "d": "lab-d", "cl": "client"}
POLL_WAIT_S = 0.5   # labctl ls --lan --wait while polling for a change
FULL_WAIT_S = 1.5   # labctl ls --lan --wait, and discover()'s timeout, for a complete listing


def preflight():
    """Why the LAN lab cannot run here, or None."""
    problem = netlab.preflight()
    if problem:
        return problem
    for program, package in (("dbus-daemon", "dbus-daemon"), ("avahi-daemon", "avahi-daemon"),
                             ("openssl", "openssl")):
        try:
            netlab.tool(program)
        except RuntimeError:
            return ("tests/multihost/test_lan_discovery.py needs %s (apt-get install %s, or scripts/install-deps)"
                    % (program, package))
    return None


class LanLab(netlab.Network):
    def __init__(self):
        super().__init__(PREFIX, SUBNET, HOSTS, "labhost-lan-")
        self.fake_responder = None

    @property
    def a(self):
        return self.hosts["a"]

    @property
    def b(self):
        return self.hosts["b"]

    @property
    def c(self):
        return self.hosts["c"]

    @property
    def d(self):
        return self.hosts["d"]

    @property
    def fk(self):
        return self.hosts["fk"]

    @property
    def client(self):
        return self.hosts["cl"]

    @property
    def client2(self):
        return self.hosts["cl2"]

    @property
    def daemon_hosts(self):
        return [self.hosts[r] for r in ("a", "b", "c", "d")]

    def make(self):
        self.make_network()
        make_tls_files(self.b)
        for host in self.daemon_hosts:
            netlab.make_plugin_folder(host)
        self.a.write_config(host_a_config(self.a))
        self.b.write_config(host_b_config(self.b))
        self.c.write_config(single_daemon_config(self.c, "laser_c", announce=False))
        self.d.write_config(single_daemon_config(self.d, "laser_d"))
        for role, name in AVAHI_NAMES.items():
            if role != "d":
                self.hosts[role].start_avahi(name)
        self.d.start_dbus()  # a bus, but no avahi-daemon on it
        for host in self.daemon_hosts:
            p = run([binary("labhost"), "check", "--config", host.config], check=False)
            if p.returncode != 0:
                raise RuntimeError("labhost check refused %s:\n%s%s" % (host.config, p.stdout, p.stderr))
            host.start_up()

    def restore(self):
        """Every host as make() left it: labhost up running on a, b, c, d (with their
        host.json of make()), Avahi running on a, b, c and the client, not on d."""
        for role, name in AVAHI_NAMES.items():
            host = self.hosts[role]
            running = host.avahi is not None and host.avahi.poll() is None
            if role == "d" and running:
                host.stop_avahi()
            elif role != "d" and not running:
                host.start_avahi(name)
        self.c.write_config(single_daemon_config(self.c, "laser_c", announce=False))
        if self.c.up_running():  # a test that failed half-way may have left announcing on
            run(self.c.exec_argv([binary("labhost"), "reload", "--config", self.c.config]), check=False,
                env=self.c.host_env())
        for host in self.daemon_hosts:
            if not host.up_running():
                host.start_up()
        for host in self.daemon_hosts:
            wait_until(lambda: daemons_ready(host), "every daemon of host %s to serve" % host.role)

    def logs(self):
        out = []
        for host in self.daemon_hosts:
            out.append("--- last lines of labhost up on host %s (%s) ---\n%s" % (host.role, host.ip, host.log_tail(40)))
        return "\n".join(out)


def daemons_ready(host):
    """True once `labhost ps` says every daemon of the host is running."""
    p = run(host.exec_argv([binary("labhost"), "ps", "--json", "--config", host.config]), check=False,
            env=host.host_env())
    if p.returncode != 0:
        return False
    try:
        return all(d["state"] == "running" for d in json.loads(p.stdout)["daemons"])
    except (ValueError, KeyError):
        return False


def make_tls_files(host):
    """A self-signed certificate for the host's address (it is its own CA here), key mode 0600."""
    folder = os.path.join(host.folder, "tls")
    os.makedirs(folder)
    host.tls_cert = os.path.join(folder, "host.crt")
    host.tls_key = os.path.join(folder, "host.key")
    run([netlab.tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", host.tls_key, "-out", host.tls_cert, "-days", "2", "-subj", "/CN=" + host.role,
         "-addext", "subjectAltName=IP:%s" % host.ip])
    os.chmod(host.tls_key, 0o600)


def base_config(host):
    return {"plugin_dir": host.plugin_dir, "state_dir": os.path.join(host.folder, "state")}


def host_a_config(host):
    """Three daemons: one on the host's address, one on every address (0.0.0.0), one on
    loopback only (never announced)."""
    config = base_config(host)
    config.update({
        "auth": {"secret_file": host.secret_file},
        "daemons": {
            "main": {"address": "%s:7701" % host.ip, "lockable": True,
                     "services": {"laser_a": {"driver": "sim_laser", "params": {"wavelength_nm": 1550.0}},
                                  "stage_a": {"driver": "sim_stage"}}},
            "camera": {"address": "0.0.0.0:7702",
                       "services": {"camera_a": {"driver": "sim_camera", "params": {"width": 64, "height": 48}}}},
            "local": {"address": "127.0.0.1:7709", "services": {"powermeter_a": {"driver": "sim_powermeter"}}},
        },
    })
    return config


def host_b_config(host):
    config = base_config(host)
    config.update({
        "auth": {"secret_file": host.secret_file},
        "tls": {"cert_file": host.tls_cert, "key_file": host.tls_key, "ca_file": host.tls_cert},
        "daemons": {
            "main": {"address": "%s:7701" % host.ip,
                     "services": {"laser_b": {"driver": "sim_laser", "params": {"wavelength_nm": 1560.5}},
                                  "powermeter_b": {"driver": "sim_powermeter"}}},
        },
    })
    return config


def single_daemon_config(host, service, announce=True):
    config = base_config(host)
    config.update({
        "insecure": True,  # no secret: lets the daemon listen on the lab network
        "lan_discovery": {"announce": announce},
        "daemons": {"main": {"address": "%s:7701" % host.ip, "services": {service: {"driver": "sim_laser"}}}},
    })
    return config


# ------------------------------------------------------------------------ what the LAN says

def labctl_lan(host, wait=FULL_WAIT_S):
    """`labctl --json ls --lan --wait W` on `host`: {instance name: entry}. Fails the test when
    labctl does."""
    p = run(host.exec_argv([binary("labctl"), "--json", "ls", "--lan", "--wait", str(wait)]), check=False,
            env=host.client_env())
    assert p.returncode == 0, "labctl ls --lan on %s failed (%d): %s%s" % (host.role, p.returncode, p.stdout, p.stderr)
    return {entry["name"]: entry for entry in json.loads(p.stdout)}


def python_discover(host, timeout=FULL_WAIT_S):
    """labhost.discover(timeout) run on `host` (py_client.py discover): {instance name: entry}."""
    p = run(host.exec_argv([sys.executable, os.path.join(HERE, "py_client.py"), "discover", str(timeout)]),
            check=False, env=host.client_env())
    assert p.returncode == 0, "labhost.discover() on %s failed (%d): %s%s" % (host.role, p.returncode, p.stdout,
                                                                             p.stderr)
    return {entry["name"]: entry for entry in json.loads(p.stdout)["discovered"]}


def wait_listed(host, condition, what, wait=POLL_WAIT_S):
    """Polls `labctl ls --lan` on `host` until condition(listing) holds; returns the listing."""
    box = {}

    def check():
        box["listing"] = labctl_lan(host, wait)
        return condition(box["listing"])

    try:
        wait_until(check, what, interval=0.0)
    except netlab.WaitTimeout as e:
        raise netlab.WaitTimeout("%s; last listing: %s" % (e, sorted(box.get("listing", {}))))
    return box["listing"]


def start_fake_responder(lab):
    """fake_mdns_responder.py on host fk; returns once it said it listens."""
    p = lab.fk.popen([sys.executable, os.path.join(HERE, "fake_mdns_responder.py"), lab.fk.ip],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = netlab.read_line(p)
    if line != "listening":
        p.kill()
        p.wait()
        raise AssertionError("fake_mdns_responder.py did not start (%r): %s" % (line, p.stderr.read().decode()))
    lab.fake_responder = p
    return p
