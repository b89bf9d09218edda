"""A real `labhost daemon` process for a test, on a loopback port (mirrors
tests/support/test_daemon.cpp), and a real `labhost ns` nameserver.

Writes a host.json with one daemon "test" in a fresh temporary folder whose plugins/ links
every built plugin (simulated and test drivers), starts build/bin/labhost daemon on it with
its log in the folder, and reads the "listening on" line from its stdout to learn the port:
waiting on the pipe, never polling with sleeps.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))

BIN_DIR = os.environ.get("LABHOST_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
PLUGIN_DIR = os.environ.get("LABHOST_PLUGIN_DIR") or os.path.join(SOURCE_DIR, "plugins")
TEST_PLUGIN_DIR = os.environ.get("LABHOST_TEST_PLUGIN_DIR") or os.path.join(SOURCE_DIR, "build", "test-plugins")
CLIENT_DIR = os.path.join(SOURCE_DIR, "clients", "python")

START_TIMEOUT = 30.0  # seconds for a daemon to print its listening line
STOP_TIMEOUT = 30.0

_running = weakref.WeakSet()


def make_plugin_folder(folder):
    plugins = os.path.join(folder, "plugins")
    os.makedirs(plugins)
    for source in (PLUGIN_DIR, TEST_PLUGIN_DIR):
        for name in sorted(os.listdir(source)):
            if name.endswith(".so"):
                os.symlink(os.path.join(source, name), os.path.join(plugins, name))
    return plugins


def write_secret_file(folder, secret, name="labhost.secret"):
    """A secret file as the daemon accepts it: mode 0600 (it refuses files that others may
    read). The secret, then a newline. Returns its path."""
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        f.write(secret + "\n")
    return path


class DaemonProcess:
    """`services`: the services object of host.json (a dict); `address`: the daemon's
    address ("127.0.0.1:0" for any free port); `host_keys`: extra top-level keys of
    host.json (e.g. {"auth": {"secret_file": PATH}}, {"register_with": ["127.0.0.1:PORT"]},
    {"tls": {"cert_file": PATH, "key_file": PATH, "ca_file": PATH, "verify_clients": False}});
    `keys`: extra keys of the daemon entry (e.g. {"lockable": True, "lease_s": 1.0})."""

    def __init__(self, services, address="127.0.0.1:0", host_keys=None, **keys):
        self.folder = tempfile.mkdtemp(prefix="labhost-pytest-")
        self.process = None
        try:
            self._start(services, address, host_keys or {}, keys)
        except BaseException:
            if self.process is not None:
                self.kill()
                self.process.stdout.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        # Keep draining stdout so the daemon can never block on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _start(self, services, address, host_keys, keys):
        make_plugin_folder(self.folder)
        daemon = {"address": address}
        daemon.update(keys)
        daemon["services"] = services
        self.config = os.path.join(self.folder, "host.json")
        config = {"plugin_dir": "plugins"}
        config.update(host_keys)
        config["daemons"] = {"test": daemon}
        with open(self.config, "w") as f:
            json.dump(config, f, indent=2)
        self._launch(["daemon", "--config", self.config, "--name", "test"])

    def _launch(self, arguments):
        """Starts build/bin/labhost with `arguments`, its log in the folder, and learns its
        port from the "listening on" line of its stdout."""
        self.log_path = os.path.join(self.folder, "daemon.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [os.path.join(BIN_DIR, "labhost")] + arguments + ["--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        _running.add(self)
        line = self._read_line(START_TIMEOUT)
        marker = " listening on 127.0.0.1:"
        if marker not in line:
            raise RuntimeError("labhost %s did not start (stdout %r):\n%s" % (arguments[0], line, self.log()))
        self.port = int(line.split(marker, 1)[1].strip())

    def _read_line(self, timeout):
        """The first stdout line, waiting on the pipe for at most `timeout` seconds."""
        fd = self.process.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return data.decode(errors="replace") + " (timed out)"
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # the daemon exited
            data += chunk
        return data.split(b"\n", 1)[0].decode(errors="replace")

    def _drain(self):
        """Reads stdout until the daemon exits, then closes the pipe (only here, so that no
        other thread reads a closed, perhaps reused, descriptor)."""
        try:
            while os.read(self.process.stdout.fileno(), 4096):
                pass
        except (OSError, ValueError):
            pass
        self.process.stdout.close()

    def address(self, service=""):
        return "lab://127.0.0.1:%d%s" % (self.port, "/" + service if service else "")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def running(self):
        return self.process.poll() is None

    def stop(self):
        """SIGTERM, then wait (bounded; SIGKILL after STOP_TIMEOUT). The exit status."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._cleanup()
        return self.process.returncode

    def kill(self):
        """SIGKILL, as a crash or power loss would end it, and wait for it to be gone."""
        if self.running():
            self.process.kill()
        self.process.wait()
        self._cleanup()

    def _cleanup(self):
        _running.discard(self)
        # pytest shows what a test printed only when it fails: the daemon's last words then.
        tail = self.log().splitlines()[-40:]
        if tail:
            print("--- last lines of the log of labhost daemon on port %s ---" % getattr(self, "port", "?"))
            print("\n".join(tail))
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class NameserverProcess(DaemonProcess):
    """A real nameserver: `labhost ns --listen 127.0.0.1:0` (its stdout says "labhost
    nameserver listening on 127.0.0.1:PORT" when it serves). `secret_file`: require that
    secret (--secret-file); `tls`: serve TLS only, a dict like host.json's "tls" section
    (--tls-cert, --tls-key, --tls-ca, --tls-verify-clients)."""

    def __init__(self, secret_file=None, lease_s=None, tls=None):
        arguments = ["ns", "--listen", "127.0.0.1:0"]
        if secret_file:
            arguments += ["--secret-file", secret_file]
        if tls:
            arguments += ["--tls-cert", tls["cert_file"], "--tls-key", tls["key_file"],
                          "--tls-ca", tls["ca_file"]]
            if tls.get("verify_clients"):
                arguments.append("--tls-verify-clients")
        if lease_s is not None:
            arguments += ["--lease", str(lease_s)]
        self._arguments = arguments
        super().__init__(None)

    def _start(self, services, address, host_keys, keys):
        self._launch(self._arguments)

    @property
    def endpoint(self):
        """"127.0.0.1:PORT", as register_with and LABHOST_NS take it."""
        return "127.0.0.1:%d" % self.port


def kill_all():
    """Kills every daemon still running (the end of the test session)."""
    for d in list(_running):
        d.kill()
