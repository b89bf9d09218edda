"""Several hosts, one lab: network namespaces joined by a bridge, each "host" running real
labhost processes on a private address (tests/multihost).

    switch   lhmh<pid>-sw   a bridge br0, and one veth port per host
    ns       lhmh<pid>-ns   10.77.0.10   `labhost up`: the lab's nameserver (no daemons)
    a        lhmh<pid>-a    10.77.0.11   `labhost up`: daemons main (7701) and camera (7702)
    b        lhmh<pid>-b    10.77.0.12   `labhost up`: the same, other service names
    client   lhmh<pid>-cl   10.77.0.20   labctl, the Python client
    client2  lhmh<pid>-cl2  10.77.0.21   another client machine

Every interface and address lives in a namespace made here: the root namespace's interfaces
and addresses are never touched (each veth pair is created inside the switch namespace, its
other end moved straight into the host's namespace). Namespace names carry the pid of the
pytest process, so parallel runs never collide; `remove_stale()` removes those of earlier
runs whose pytest process is gone (a run killed before it could clean up).

Network is the topology alone (namespaces, bridge, addresses): Lab above builds on it, and
so does lanlab.LanLab (tests/multihost/test_lan_discovery.py, another prefix and subnet). A
Host can run a D-Bus system bus and an Avahi daemon of its own (start_avahi), for LAN discovery.
Every process in a namespace gets DBUS_SYSTEM_BUS_ADDRESS naming its host's own bus (which
exists only on hosts that run one), so that no labhost of the lab ever reaches the machine's
real system bus or Avahi daemon, and so the real network.

Binaries and plugins are found as tests/python/daemon_process.py finds them:
$LABHOST_BIN_DIR (default build/bin) and $LABHOST_PLUGIN_DIR (default plugins).
Every wait polls a condition until a deadline (wait_until); none is a fixed sleep.
"""

import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))

BIN_DIR = os.environ.get("LABHOST_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
PLUGIN_DIR = os.path.abspath(os.environ.get("LABHOST_PLUGIN_DIR") or os.path.join(SOURCE_DIR, "plugins"))
CLIENT_DIR = os.path.join(SOURCE_DIR, "clients", "python")

PREFIX = "lhmh"            # namespace names: lhmh<pid>-<role>
SUBNET = "10.77.0"         # a /24 that exists only inside this run's namespaces
NS_PORT = 7700
NS_LEASE_S = 1.5           # nameserver lease: a powered-off host's names go after this
DAEMON_LEASE_S = 2.0       # daemons' client lease: a vanished client's locks go after this
WAIT_S = 60.0              # the safety net of every wait: a hang fails, never stalls
BINARY_WAIT_S = 120.0      # a binary being rebuilt by someone else may be missing a while
COMMAND_TIMEOUT_S = 30.0   # any one labctl / ip command

HOSTS = {  # role -> last byte of the address
    "ns": 10,
    "a": 11,
    "b": 12,
    "cl": 20,
    "cl2": 21,
}

SECRET = "multihost-" + os.urandom(16).hex()


class WaitTimeout(AssertionError):
    pass


def wait_until(condition, what, timeout=WAIT_S, interval=0.05):
    """Polls condition() until it returns something true, which it returns; fails with `what`
    and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeout("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


def binary(name):
    """The path of build/bin/NAME, waiting (bounded) while a rebuild has it missing."""
    path = os.path.join(BIN_DIR, name)
    wait_until(lambda: os.access(path, os.X_OK), "%s to exist (is the tree being rebuilt?)" % path,
               timeout=BINARY_WAIT_S, interval=0.2)
    return path


def run(argv, check=True, timeout=COMMAND_TIMEOUT_S, env=None):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError("%s exited with %d:\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p


def preflight():
    """Why these tests cannot run here, or None. Checked before anything is made."""
    if os.geteuid() != 0:
        return ("tests/multihost must run as root: they make network namespaces, veth pairs "
                "and a bridge with `ip netns` (euid is %d)" % os.geteuid())
    if shutil.which("ip") is None:
        return "tests/multihost need iproute2's `ip` (apt-get install iproute2): not found in PATH"
    probe = "%s%d-probe" % (PREFIX, os.getpid())
    p = run(["ip", "netns", "add", probe], check=False)
    if p.returncode != 0:
        return "`ip netns add` does not work here (%s): tests/multihost need network namespaces" % p.stderr.strip()
    run(["ip", "netns", "del", probe], check=False)
    return None


# ---------------------------------------------------------------- processes in namespaces

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_pytest():
    """preexec_fn: the child gets SIGKILL if pytest dies, so no labhost outlives a killed run
    (`labhost up`'s own children then get SIGTERM from it, PR_SET_PDEATHSIG too)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def netns_pids(netns):
    p = run(["ip", "netns", "pids", netns], check=False)
    return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids):
    """SIGSTOP every process first (so none reacts to another's end: a supervisor restarting a
    child, a child's SIGTERM from its dying parent), then SIGKILL each. Waits until all are gone."""
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    wait_until(lambda: not any(pid_alive(p) for p in pids), "processes %s to end" % pids, timeout=30)


class Host:
    """One namespace: an address on the lab's network, and a folder of its own."""

    def __init__(self, lab, role):
        self.lab = lab
        self.role = role
        self.netns = "%s%d-%s" % (lab.prefix, lab.pid, role)
        self.ip = "%s.%d" % (lab.subnet, lab.host_bytes[role])
        self.folder = os.path.join(lab.folder, role)
        os.makedirs(self.folder)
        self.secret_file = write_secret_file(self.folder, SECRET)
        self.plugin_dir = os.path.join(self.folder, "plugins")  # made by make_plugin_folder
        self.config = None      # host.json of `labhost up`, for hosts that run one
        self.up = None          # the running `labhost up` (subprocess.Popen)
        self.log_path = os.path.join(self.folder, "labhost-up.log")
        self.runs = 0
        # The host's own system bus: its socket exists only while start_avahi's dbus-daemon runs.
        self.dbus_socket = os.path.join(self.folder, "dbus", "system_bus_socket")
        self.dbus = None        # the host's dbus-daemon (subprocess.Popen), when it runs one
        self.avahi = None       # the host's avahi-daemon (subprocess.Popen), when it runs one

    # network

    def link(self, state):
        """Sets the host's only network interface up or down (down: nothing leaves or
        arrives, not even a FIN or RST)."""
        run(["ip", "-n", self.netns, "link", "set", "eth0", state])

    def link_is_up(self):
        p = run(["ip", "-n", self.netns, "-o", "link", "show", "eth0"], check=False)
        return p.returncode == 0 and ",UP" in p.stdout

    # processes

    def exec_argv(self, argv):
        return ["ip", "netns", "exec", self.netns] + list(argv)

    @property
    def dbus_address(self):
        return "unix:path=" + self.dbus_socket

    def host_env(self):
        """The environment of this host's labhost processes: this host's own system bus."""
        return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.dbus_address)

    def client_env(self):
        env = {k: v for k, v in self.host_env().items() if not k.startswith("LABHOST_")}
        env["LABHOST_SECRET_FILE"] = self.secret_file
        if self.lab.ns_endpoint:
            env["LABHOST_NS"] = self.lab.ns_endpoint
        env["PYTHONPATH"] = CLIENT_DIR
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def labctl(self, *args, check=False, timeout=COMMAND_TIMEOUT_S, client_name=None):
        """Runs labctl in this namespace with the lab's nameserver (if it has one) and the
        secret (from LABHOST_SECRET_FILE). Returns the CompletedProcess."""
        argv = [binary("labctl")] + (["--ns", self.lab.ns_endpoint] if self.lab.ns_endpoint else []) + ["--timeout", "5"]
        if client_name:
            argv += ["--client-name", client_name]
        return run(self.exec_argv(argv + list(args)), check=check, timeout=timeout, env=self.client_env())

    def popen(self, argv, **kwargs):
        """A long-running process in this namespace (killed if pytest dies)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.exec_argv(argv), preexec_fn=_die_with_pytest, env=self.client_env(),
                                **kwargs)

    def write_config(self, config):
        self.config = os.path.join(self.folder, "host.json")
        with open(self.config, "w") as f:
            json.dump(config, f, indent=2)

    def start_up(self):
        """Starts `labhost up --config host.json` in this namespace, its output appended to
        labhost-up.log. `ip netns exec` execs labhost in place: the Popen's pid is labhost up's."""
        assert self.up is None or self.up.poll() is not None, "labhost up already runs on " + self.role
        self.runs += 1
        with open(self.log_path, "ab") as log:
            log.write(b"\n===== %s: labhost up, run %d =====\n" % (self.role.encode(), self.runs))
            log.flush()
            self.up = subprocess.Popen(
                self.exec_argv([binary("labhost"), "up", "--config", self.config, "--log-level", "debug"]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_pytest, env=self.host_env())

    def up_running(self):
        return self.up is not None and self.up.poll() is None

    def children_of_up(self):
        """Pids of the processes `labhost up` started (the nameserver, the daemons)."""
        if not self.up_running():
            return []
        try:
            with open("/proc/%d/task/%d/children" % (self.up.pid, self.up.pid)) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def cmdline(self, pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return f.read().split(b"\0")
        except OSError:
            return []

    def power_cut(self):
        """As a power loss: the network goes first (so no FIN or RST ever leaves), then every
        process of the host stops at once (SIGSTOP all, SIGKILL all)."""
        self.link("down")
        kill_pids(netns_pids(self.netns))
        if self.up is not None:
            self.up.wait(timeout=30)

    def power_on(self):
        """Boots the host again: the TCP state of the previous boot is discarded (a real power
        cut loses it: no FIN of a killed process is retransmitted once the link is back), the
        link comes back, and `labhost up` starts on the same host.json, as systemd would."""
        self.discard_tcp_state()
        self.link("up")
        self.start_up()

    def discard_tcp_state(self):
        """`ss -K` (SOCK_DESTROY) on every TCP socket of the namespace, while its link is
        down, so nothing it might send gets out. Kernels without CONFIG_INET_DIAG_DESTROY keep
        the sockets: said on stderr, and then the orphaned FINs go out after the link is up
        (which changes nothing the tests assert before that)."""
        run(self.exec_argv(["ss", "-K", "-tan"]), check=False)
        left = run(self.exec_argv(["ss", "-H", "-tan"]), check=False).stdout.strip()
        if left:
            print("netlab: ss -K left TCP sockets on host %s (kernel without INET_DIAG_DESTROY?):\n%s"
                  % (self.role, left), file=sys.stderr)

    def kill_everything(self):
        kill_pids(netns_pids(self.netns))
        if self.up is not None:
            try:
                self.up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def log_mark(self):
        """Where labhost-up.log ends now: log_since(mark) is what was written after."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # D-Bus and Avahi of the host's own (LAN discovery)

    def start_avahi(self, name):
        """Starts this host's system bus (dbus-daemon, its socket in the host's folder) unless
        it runs, then avahi-daemon announcing the host as NAME.local, and waits until Avahi
        serves on eth0. Each runs in a mount namespace of its own (`ip netns exec` makes one)
        with a tmpfs over /run, so that every host's avahi-daemon has its own pid file and
        socket in /run/avahi-daemon, and nothing of the machine's /run is touched."""
        if self.dbus is None or self.dbus.poll() is not None:
            self.start_dbus()
        assert self.avahi is None or self.avahi.poll() is not None, "avahi-daemon already runs on " + self.role
        folder = os.path.join(self.folder, "avahi")
        os.makedirs(folder, exist_ok=True)
        config = os.path.join(folder, "avahi-daemon.conf")
        with open(config, "w") as f:
            f.write(AVAHI_CONFIG % {"name": name})
        log_path = os.path.join(folder, "avahi-daemon.log")
        mark = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        with open(log_path, "ab") as log:
            self.avahi = subprocess.Popen(
                self.exec_argv(["sh", "-c", 'mount -t tmpfs -o mode=0755 labhost-test-run /run && exec "$@"', "sh",
                                tool("avahi-daemon"), "--file", config, "--no-drop-root", "--no-chroot",
                                "--no-rlimits", "--no-proc-title"]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_pytest,
                env=self.host_env())

        def serving():
            with open(log_path, errors="replace") as f:
                f.seek(mark)
                said = f.read()
            if self.avahi.poll() is not None:
                raise RuntimeError("avahi-daemon on %s exited with %s:\n%s" % (self.role, self.avahi.returncode, said))
            return "Server startup complete" in said and "New relevant interface eth0.IPv4" in said

        wait_until(serving, "avahi-daemon on %s to serve on eth0" % self.role)

    def stop_avahi(self):
        """SIGTERM to avahi-daemon (it says goodbye for what it announced), and waits for its end."""
        if self.avahi is not None and self.avahi.poll() is None:
            self.avahi.terminate()
            self.avahi.wait(timeout=WAIT_S)
        self.avahi = None

    def start_dbus(self):
        """A system bus of this host's own: dbus-daemon with a configuration of its own (any
        local process may own names and call methods: everything here runs as root), its
        socket in the host's folder, named to this host's processes by DBUS_SYSTEM_BUS_ADDRESS."""
        folder = os.path.dirname(self.dbus_socket)
        os.makedirs(folder, exist_ok=True)
        config = os.path.join(folder, "system.conf")
        with open(config, "w") as f:
            f.write(DBUS_CONFIG % {"socket": self.dbus_socket})
        if os.path.exists(self.dbus_socket):
            os.unlink(self.dbus_socket)
        with open(os.path.join(folder, "dbus-daemon.log"), "ab") as log:
            self.dbus = subprocess.Popen(
                self.exec_argv([tool("dbus-daemon"), "--config-file", config, "--nofork", "--nopidfile"]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_pytest)
        wait_until(lambda: os.path.exists(self.dbus_socket) or self.dbus.poll() is not None,
                   "dbus-daemon on %s to listen" % self.role)
        if self.dbus.poll() is not None:
            raise RuntimeError("dbus-daemon on %s exited with %s" % (self.role, self.dbus.returncode))


# A system bus that lets the host's processes (root, every one) own names and call each other.
DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%(socket)s</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""

# avahi-daemon as Debian configures it, on the lab interface only, with a host name of its own
# (the namespaces share the machine's host name) and nothing published but what labhost asks.
AVAHI_CONFIG = """[server]
host-name=%(name)s
domain-name=local
use-ipv4=yes
use-ipv6=yes
allow-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-hinfo=no
publish-workstation=no
publish-addresses=yes

[reflector]
enable-reflector=no
"""


def tool(name):
    """The path of a program the lab needs (dbus-daemon, avahi-daemon), or a clear failure."""
    for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError("%s is not installed: tests/multihost need it (scripts/install-deps installs it; "
                       "apt-get install avahi-daemon dbus-daemon)" % name)


def write_secret_file(folder, secret, name="lab.secret"):
    """The lab's shared secret, in a file of this host's own, mode 0600 (labhost refuses a
    secret file that group or others may read)."""
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return path


PLUGINS = ("sim_laser", "sim_stage", "sim_powermeter", "sim_camera")


def make_plugin_folder(host):
    """The host's own plugin folder: a link to each simulated driver of $LABHOST_PLUGIN_DIR
    (as tests/python/daemon_process.py does), so a rebuilt plugin is the one used."""
    os.makedirs(host.plugin_dir)
    for name in PLUGINS:
        source = os.path.join(PLUGIN_DIR, name + ".so")
        wait_until(lambda: os.path.isfile(source), "%s to exist (is the tree being rebuilt?)" % source,
                   timeout=BINARY_WAIT_S, interval=0.2)
        os.symlink(source, os.path.join(host.plugin_dir, name + ".so"))


def lab_host_config(host, suffix, wavelength_nm):
    """host.json of a lab host: two daemons on the host's own address, registering with the
    lab's nameserver; services named NAME_SUFFIX so that each host's names are its own."""
    return {
        "plugin_dir": host.plugin_dir,
        "state_dir": os.path.join(host.folder, "state"),
        "auth": {"secret_file": host.secret_file},
        "register_with": [host.lab.ns_endpoint],
        "daemons": {
            "main": {
                "address": "%s:7701" % host.ip,
                "lockable": True,
                "lease_s": DAEMON_LEASE_S,
                "services": {
                    "laser_" + suffix: {"driver": "sim_laser", "description": "Tunable laser on host " + suffix.upper(),
                                        "params": {"wavelength_nm": wavelength_nm}},
                    "stage_" + suffix: {"driver": "sim_stage", "description": "Linear stage on host " + suffix.upper(),
                                        "params": {"speed_mm_s": 1000.0}},
                    "powermeter_" + suffix: {"driver": "sim_powermeter", "params": {"seed": 7}},
                },
            },
            "camera": {
                "address": "%s:7702" % host.ip,
                "lease_s": DAEMON_LEASE_S,
                "services": {
                    "camera_" + suffix: {"driver": "sim_camera", "params": {"width": 64, "height": 48}},
                },
            },
        },
    }


def nameserver_host_config(host):
    """host.json of the nameserver host: a nameserver on its address, and no daemons."""
    return {
        "plugin_dir": host.plugin_dir,
        "state_dir": os.path.join(host.folder, "state"),
        "auth": {"secret_file": host.secret_file},
        "nameserver": {"listen": host.lab.ns_endpoint, "lease_s": NS_LEASE_S},
        "daemons": {},
    }


class Network:
    """Namespaces joined by a bridge: one per role in `hosts` (role -> last byte of its
    address in `subnet`), and the switch's. make_network() builds it; destroy() removes every
    process and namespace it made, whatever state it is in."""

    def __init__(self, prefix, subnet, hosts, folder_prefix):
        self.pid = os.getpid()
        self.prefix = prefix
        self.subnet = subnet
        self.host_bytes = dict(hosts)
        self.folder = tempfile.mkdtemp(prefix=folder_prefix)
        self.switch_netns = "%s%d-sw" % (prefix, self.pid)
        self.ns_endpoint = None  # the lab's nameserver, "HOST:PORT", for a lab that has one
        self.made = []  # namespaces created, for destroy()
        self.hosts = {role: Host(self, role) for role in hosts}

    def _add_netns(self, name):
        run(["ip", "netns", "add", name])
        self.made.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def make_network(self):
        self._add_netns(self.switch_netns)
        run(["ip", "-n", self.switch_netns, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.switch_netns, "link", "set", "br0", "up"])
        for role, host in self.hosts.items():
            self._add_netns(host.netns)
            port = "p-" + role
            # Made inside the switch's namespace; the other end goes straight to the host's.
            run(["ip", "-n", self.switch_netns, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", host.netns])
            run(["ip", "-n", self.switch_netns, "link", "set", port, "master", "br0"])
            run(["ip", "-n", self.switch_netns, "link", "set", port, "up"])
            run(["ip", "-n", host.netns, "addr", "add", host.ip + "/24", "dev", "eth0"])
            run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])

    def destroy(self):
        problems = []
        for name in reversed(self.made):
            try:
                kill_pids(netns_pids(name))
            except Exception as e:  # keep going: every namespace must go
                problems.append("%s: %s" % (name, e))
        for host in self.hosts.values():
            for process, what in ((host.up, "labhost up"), (host.avahi, "avahi-daemon"), (host.dbus, "dbus-daemon")):
                if process is not None:
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        problems.append("%s of %s did not end" % (what, host.role))
        for name in reversed(self.made):
            p = run(["ip", "netns", "del", name], check=False)
            if p.returncode != 0:
                problems.append("ip netns del %s: %s" % (name, p.stderr.strip()))
        self.made = []
        shutil.rmtree(self.folder, ignore_errors=True)
        if problems:
            raise RuntimeError("cleaning up the lab: " + "; ".join(problems))

    def destroy_quietly(self):
        try:
            self.destroy()
        except Exception as e:
            print(e, file=sys.stderr)


class Lab(Network):
    """The multihost topology (the table at the top). make() builds it and starts every host."""

    def __init__(self):
        super().__init__(PREFIX, SUBNET, HOSTS, "labhost-multihost-")
        self.ns_endpoint = "%s.%d:%d" % (SUBNET, HOSTS["ns"], NS_PORT)
        self.names_a = ["camera_a", "laser_a", "powermeter_a", "stage_a"]
        self.names_b = ["camera_b", "laser_b", "powermeter_b", "stage_b"]
        self.wavelength = {"a": 1550.0, "b": 1560.5}

    @property
    def ns(self):
        return self.hosts["ns"]

    @property
    def a(self):
        return self.hosts["a"]

    @property
    def b(self):
        return self.hosts["b"]

    @property
    def client(self):
        return self.hosts["cl"]

    @property
    def client2(self):
        return self.hosts["cl2"]

    def make(self):
        self.make_network()
        for host in (self.ns, self.a, self.b):
            make_plugin_folder(host)
        self.ns.write_config(nameserver_host_config(self.ns))
        self.a.write_config(lab_host_config(self.a, "a", self.wavelength["a"]))
        self.b.write_config(lab_host_config(self.b, "b", self.wavelength["b"]))
        for host in (self.ns, self.a, self.b):
            p = run([binary("labhost"), "check", "--config", host.config], check=False)
            if p.returncode != 0:
                raise RuntimeError("labhost check refused %s:\n%s%s" % (host.config, p.stdout, p.stderr))
            host.start_up()

    # what the nameserver says, from a client machine

    def names(self, host=None):
        """{name: address} as `labctl --json ls` shows them from `host` (the client by
        default), or None when the nameserver cannot be asked."""
        p = (host or self.client).labctl("--json", "ls")
        if p.returncode != 0:
            return None
        try:
            return {n["name"]: n["address"] for n in json.loads(p.stdout)}
        except (ValueError, KeyError, TypeError):
            return None

    def expected_names(self, hosts=("a", "b")):
        out = {}
        for h in hosts:
            host = self.hosts[h]
            for name in (self.names_a if h == "a" else self.names_b):
                port = 7702 if name.startswith("camera") else 7701
                out[name] = "lab://%s:%d/%s" % (host.ip, port, name)
        return out

    def wait_names(self, want, what, timeout=WAIT_S):
        """Waits until the nameserver lists exactly `want` ({name: address}); returns the
        seconds it took."""
        start = time.monotonic()
        wait_until(lambda: self.names() == want, what, timeout=timeout, interval=0.1)
        return time.monotonic() - start

    def restore(self):
        """Brings every host back (links up, `labhost up` running) after a test that may have
        failed half-way, and waits for every name."""
        for host in self.hosts.values():
            if not host.link_is_up():
                host.link("up")
        for host in (self.ns, self.a, self.b):
            if not host.up_running():
                host.kill_everything()  # leftovers of a half-done power cut
                host.start_up()
        self.wait_names(self.expected_names(), "every name of hosts A and B")

    def logs(self):
        out = []
        for host in (self.ns, self.a, self.b):
            out.append("--- last lines of labhost up on host %s (%s) ---\n%s" % (host.role, host.ip, host.log_tail()))
        return "\n".join(out)


def read_line(process, timeout=WAIT_S):
    """The next line of `process`'s stdout (a pipe), waiting at most `timeout` seconds: ""
    when the process ended or said nothing in time."""
    fd = process.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        byte = os.read(fd, 1)
        if not byte:
            break
        data += byte
    return data.decode(errors="replace").strip()


def stop(process, sig=signal.SIGTERM):
    """Signals `process` (SIGTERM: a graceful stop) and returns its exit status; kills it and
    fails when it has not ended within WAIT_S."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def remove_stale(prefix=PREFIX):
    """Removes the namespaces (and their processes) of earlier runs whose pytest is gone."""
    p = run(["ip", "netns", "list"], check=False)
    pattern = re.compile(r"^%s(\d+)-[a-z0-9]+$" % prefix)
    for line in p.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pattern.match(name)
        # Our own pid too: a run killed long ago whose pid this run now has (called before
        # this run makes any namespace).
        if not m or (int(m.group(1)) != os.getpid() and pid_alive(int(m.group(1)))):
            continue
        try:
            kill_pids(netns_pids(name))
        except Exception as e:
            print("could not end the processes of stale namespace %s: %s" % (name, e), file=sys.stderr)
        run(["ip", "netns", "del", name], check=False)
