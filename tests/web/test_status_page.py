"""The status page and /metrics of `labhost up`, through a real host: a real `labhost up`
(with the simulated instruments), real calls and a real lock from `labctl`, and the page
rendered by headless Chromium, its DOM read and its screenshot checked pixel by pixel.

Run by CTest as web_test (tests/CMakeLists.txt); needs Debian's chromium package, which
`make test` installs.
"""

import base64
import json
import os
import shutil
import signal
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zlib

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("LABHOST_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
PLUGIN_DIR = os.environ.get("LABHOST_PLUGIN_DIR") or os.path.join(SOURCE_DIR, "plugins")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT = 60.0  # every wait on labhost or Chromium is bounded: a hang fails, never stalls

RATE_COLOR = (0x1F, 0x6F, 0xEB)      # the calls/s line of the page's plots
LATENCY_COLOR = (0xD9, 0x48, 0x0F)   # the mean-duration line
HEADER_COLOR = (0x1D, 0x23, 0x30)    # the page's header bar


def eventually(condition, what, limit=WAIT):
    """Waits for a condition that another process brings about, checked every 50 ms."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def labctl(*args, check=True):
    result = subprocess.run([os.path.join(BIN_DIR, "labctl"), *args], capture_output=True, text=True, timeout=WAIT)
    if check and result.returncode != 0:
        raise AssertionError("labctl %s: %s" % (" ".join(args), result.stderr))
    return result


def get(url, headers=None, context=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, response.headers.get("Content-Type"), response.read().decode()


class Host:
    """A host folder with one lockable daemon (laser, stage) and `labhost up` on it, its status
    page on a free loopback port. `secret`: the host's auth secret; `tls`: a folder made by
    tests/support/make-test-pki, for the host's TLS."""

    def __init__(self, secret=None, tls=None):
        self.folder = tempfile.mkdtemp(prefix="labhost-web-")
        os.symlink(PLUGIN_DIR, os.path.join(self.folder, "plugins"))
        self.config = os.path.join(self.folder, "host.json")
        config = {"plugin_dir": "plugins", "state_dir": "state",
                  "http": {"listen": "127.0.0.1:0", "refresh_s": 0.2},
                  "daemons": {"main": {"address": "127.0.0.1:0", "lockable": True,
                                       "services": {"laser": {"driver": "sim_laser"},
                                                    "stage": {"driver": "sim_stage"}}}}}
        self.env = dict(os.environ)
        if secret is not None:
            secret_file = os.path.join(self.folder, "lab.secret")
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with open(fd, "w") as f:
                f.write(secret + "\n")
            config["auth"] = {"secret_file": secret_file}
            self.env["LABHOST_SECRET"] = secret  # for labhost ps
        if tls is not None:
            config["tls"] = {"cert_file": os.path.join(tls, "server.crt"), "key_file": os.path.join(tls, "server.key"),
                             "ca_file": os.path.join(tls, "ca.crt")}
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.log = open(os.path.join(self.folder, "up.log"), "w")
        self.up = subprocess.Popen([os.path.join(BIN_DIR, "labhost"), "up", "--config", self.config],
                                   stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ps = eventually(lambda: self.ps_if_running(), "labhost up to run its daemon and its status page")
        except BaseException:
            self.close()  # nothing is left running when a test cannot even start its host
            raise
        self.page = ps["http"]
        self.daemon = "lab://" + ps["daemons"][0]["address"]

    def ps_if_running(self):
        result = subprocess.run([os.path.join(BIN_DIR, "labhost"), "ps", "--json", "--config", self.config],
                                capture_output=True, text=True, timeout=WAIT, env=self.env)
        if result.returncode != 0:
            return None
        ps = json.loads(result.stdout)
        running = ps["daemons"] and all(d["state"] == "running" and d["services"] for d in ps["daemons"])
        return ps if running and "http" in ps else None

    def close(self):
        if self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
            try:
                self.up.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.up.pid, signal.SIGKILL)
                self.up.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def host():
    h = Host()
    yield h
    h.close()


@pytest.fixture
def holder(host):
    """A labctl holding the laser's lock, as ana@web-test."""
    process = subprocess.Popen([os.path.join(BIN_DIR, "labctl"), "--client-name", "ana@web-test", "lock",
                                host.daemon + "/laser", "--hold"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("locked "), line
    yield process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=WAIT)


def chromium(url, *what):
    """Runs headless Chromium on the page (its timers run on virtual time, so the page polls
    its data a few times) and returns its stdout."""
    profile = tempfile.mkdtemp(prefix="labhost-chromium-")
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, "--window-size=1280,800", "--hide-scrollbars",
             "--virtual-time-budget=3000", *what, url],
            capture_output=True, text=True, timeout=WAIT)
        assert result.returncode == 0, result.stderr
        return result.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG, as Chromium writes."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0, "an unexpected PNG layout"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up, up_left = previous[x], (previous[x - channels] if x >= channels else 0)
            if kind == 1:
                row[x] = (row[x] + left) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + up) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                row[x] = (row[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append([tuple(row[i:i + 3]) for i in range(0, stride, channels)])
        previous = row
    return width, height, rows


def pixels_near(rows, color, tolerance=40):
    return sum(1 for row in rows for p in row if all(abs(a - b) <= tolerance for a, b in zip(p, color)))


def test_the_page_shows_services_states_locks_and_live_call_plots(host, holder):
    for _ in range(60):
        labctl("call", host.daemon + "/stage", "position")
    labctl("call", host.daemon + "/stage", "move_to", "1000", check=False)  # outside the travel: an error
    # The figures the page shows come from the daemon: wait until a refresh has seen the calls.
    def counted():
        status = json.loads(get(host.page + "api/status")[2])
        stage = next(s for s in status["processes"][0]["services"] if s["name"] == "stage")
        return stage["calls"] >= 61 and any(r > 0 for r in stage["history"]["calls_per_s"]) and status
    status = eventually(counted, "the status page to count the calls")
    services = {s["name"]: s for s in status["processes"][0]["services"]}
    assert services["laser"]["lock"]["holder"] == "ana@web-test"
    assert services["stage"]["errors"] == {"driver_error": 1}
    assert status["processes"][0]["recent_errors"][-1]["method"] == "move_to"

    dom = chromium(host.page, "--dump-dom")
    assert "labhost on " in dom
    assert 'data-service="laser"' in dom and 'data-service="stage"' in dom
    assert "locked by ana@web-test" in dom
    assert ">running<" in dom and ">ready<" in dom
    assert "move_to() for " in dom  # the recent error, named

    shot = os.path.join(host.folder, "page.png")
    chromium(host.page, "--screenshot=" + shot)
    width, height, rows = read_png(shot)
    assert (width, height) == (1280, 800)
    # Real content, not a blank page: the header bar, and the plots' lines in their colours.
    assert pixels_near(rows[:40], HEADER_COLOR, 8) > 1280 * 20
    assert pixels_near(rows, RATE_COLOR) > 60, "no calls/s line in the screenshot"
    assert pixels_near(rows, LATENCY_COLOR) > 60, "no mean-duration line in the screenshot"


def test_metrics_are_prometheus_text_with_the_daemons_counters(host, holder):
    for _ in range(7):
        labctl("call", host.daemon + "/stage", "position")
    def metrics():
        status, content_type, text = get(host.page + "metrics")
        return 'labhost_calls_total{daemon="main",service="stage"} 7' in text and (status, content_type, text)
    status, content_type, text = eventually(metrics, "/metrics to count the calls")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    lines = text.splitlines()
    assert "# TYPE labhost_calls_total counter" in lines
    assert 'labhost_up{process="main",role="daemon"} 1' in lines
    assert 'labhost_service_locked{daemon="main",service="laser"} 1' in lines
    assert 'labhost_service_locked{daemon="main",service="stage"} 0' in lines
    assert 'labhost_call_duration_seconds_count{daemon="main",service="stage"} 7' in lines
    assert 'labhost_call_duration_seconds_bucket{daemon="main",service="stage",le="+Inf"} 7' in lines
    assert 'labhost_calls_total{daemon="main",service="laser"} 0' in lines
    # Every sample line is NAME{LABELS} VALUE, with a number.
    for line in lines:
        if not line.startswith("#"):
            name, number = line.rsplit(" ", 1)
            float(number)
            assert name.startswith("labhost_")


def test_unknown_pages_and_other_methods_are_refused(host):
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(host.page + "nothing-here")
    assert missing.value.code == 404
    request = urllib.request.Request(host.page + "api/status", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as posted:
        urllib.request.urlopen(request, timeout=10)
    assert posted.value.code == 405


def test_with_the_hosts_secret_the_page_asks_for_it(tmp_path):
    host = Host(secret="web-s3cret")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(host.page + "api/status")
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"].startswith("Basic realm=\"labhost\"")
        wrong = {"Authorization": "Basic " + base64.b64encode(b"anyone:guess").decode()}
        with pytest.raises(urllib.error.HTTPError) as guessed:
            get(host.page + "metrics", wrong)
        assert guessed.value.code == 401
        right = {"Authorization": "Basic " + base64.b64encode(b"anyone:web-s3cret").decode()}
        # The collector itself reaches the daemon with the secret: the page shows its services.
        def shown():
            status = json.loads(get(host.page + "api/status", right)[2])
            return [s["name"] for s in status["processes"][0]["services"]]
        assert eventually(shown, "the page to show the daemon's services") == ["laser", "stage"]
    finally:
        host.close()


def test_with_the_hosts_tls_the_page_is_https(tmp_path):
    pki = str(tmp_path / "pki")
    subprocess.run([os.path.join(SOURCE_DIR, "tests", "support", "make-test-pki"), pki], check=True, timeout=WAIT)
    host = Host(tls=pki)
    try:
        assert host.page.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        def shown():
            status = json.loads(get(host.page + "api/status", context=context)[2])
            return [s["name"] for s in status["processes"][0]["services"]]
        assert eventually(shown, "the page to show the daemon's services over TLS") == ["laser", "stage"]
        with pytest.raises(urllib.error.URLError):  # a client that does not trust the lab CA
            get(host.page, context=ssl.create_default_context())
    finally:
        host.close()
