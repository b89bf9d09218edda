"""clients/python installs with pip offline: its build backend (clients/python/build_backend,
standard library only, `requires = []`) needs nothing from an index even with pip's default
build isolation. pip runs with PIP_NO_INDEX=1, so any download attempt fails the test.

Uses `sys.executable -m pip`: without pip (Debian: python3-pip, see scripts/install-deps)
these tests fail rather than skip."""

import base64
import csv
import datetime
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from daemon_process import CLIENT_DIR

BACKEND_DIR = os.path.join(CLIENT_DIR, "build_backend")
sys.path.insert(0, BACKEND_DIR)
import labhost_build  # noqa: E402

sys.path.remove(BACKEND_DIR)

PROJECT = labhost_build.Project.load(CLIENT_DIR)
NAME, VERSION = PROJECT.name, PROJECT.version
DIST_INFO = "%s-%s.dist-info" % (NAME, VERSION)
WHEEL_NAME = "%s-%s-py3-none-any.whl" % (NAME, VERSION)
PACKAGE_FILES = sorted(
    os.path.relpath(os.path.join(folder, f), CLIENT_DIR).replace(os.sep, "/")
    for folder, _, names in os.walk(os.path.join(CLIENT_DIR, "labhost"))
    for f in names if f.endswith(".py"))  # the package and its subpackages (labhost/aio)


def offline_env(**extra):
    """pip without an index or user configuration; build isolation left at its default."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in ("PYTHONPATH", "SOURCE_DATE_EPOCH")}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", PIP_ROOT_USER_ACTION="ignore", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def pip(*args, cwd=None):
    version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                             text=True, env=offline_env())
    assert version.returncode == 0, (
        "%s has no pip (Debian: apt-get install python3-pip, as scripts/install-deps does):\n%s"
        % (sys.executable, version.stderr))
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                            text=True, env=offline_env(), cwd=cwd, timeout=300)
    assert result.returncode == 0, "pip %s failed:\n%s\n%s" % (
        " ".join(args), result.stdout, result.stderr)
    return result


def import_from(directory, code="print(labhost.__file__, labhost.__version__)"):
    """Imports labhost in a child interpreter that sees only `directory` (-I: no PYTHONPATH,
    no user site, no current directory), and runs code."""
    child = "import sys; sys.path.insert(0, sys.argv[1]); import labhost; " + code
    result = subprocess.run([sys.executable, "-I", "-c", child, directory],
                            capture_output=True, text=True, cwd=directory, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode("ascii")


def check_wheel(path, expected_files):
    """A PEP 427 wheel: expected_files, the .dist-info files, and a RECORD that lists each
    file once with its sha256 and size (RECORD itself without)."""
    with zipfile.ZipFile(path) as wheel:
        assert wheel.testzip() is None
        names = wheel.namelist()
        assert sorted(names) == sorted(expected_files + [
            DIST_INFO + "/METADATA", DIST_INFO + "/WHEEL", DIST_INFO + "/RECORD"])
        wheel_file = wheel.read(DIST_INFO + "/WHEEL").decode("utf-8")
        assert wheel_file.splitlines() == [
            "Wheel-Version: 1.0", "Generator: " + labhost_build.GENERATOR,
            "Root-Is-Purelib: true", "Tag: py3-none-any"]

        metadata = wheel.read(DIST_INFO + "/METADATA").decode("utf-8")
        headers, _, description = metadata.partition("\n\n")
        fields = [line.split(": ", 1) for line in headers.splitlines()]
        assert fields[:3] == [["Metadata-Version", "2.1"], ["Name", NAME], ["Version", VERSION]]
        values = dict(fields)
        assert values["Summary"] == PROJECT.project["description"]
        assert values["Requires-Python"] == ">=3.9"
        assert values["Description-Content-Type"] == "text/markdown"
        assert ["Provides-Extra", "numpy"] in fields
        assert ["Requires-Dist", 'numpy; extra == "numpy"'] in fields
        with open(os.path.join(CLIENT_DIR, "README.md"), encoding="utf-8") as f:
            assert description == f.read()

        rows = list(csv.reader(io.StringIO(wheel.read(DIST_INFO + "/RECORD").decode("utf-8"))))
        assert sorted(row[0] for row in rows) == sorted(names)
        for name, digest, size in rows:
            if name == DIST_INFO + "/RECORD":
                assert digest == "" and size == ""
                continue
            data = wheel.read(name)
            assert digest == record_hash(data), name
            assert int(size) == len(data), name
        return {name: wheel.read(name) for name in names}


def test_version_matches_package():
    # The backend refuses to build when they differ; this says so before pip runs.
    import labhost
    assert labhost.__version__ == VERSION


def test_pip_install_offline(tmp_path):
    target = str(tmp_path / "target")
    pip("install", "--no-deps", "--target", target, CLIENT_DIR)
    out = import_from(target, "assert callable(labhost.connect); "
                              "print(labhost.__file__, labhost.__version__)")
    module_file, version = out.split()
    assert module_file == os.path.join(target, "labhost", "__init__.py")
    assert version == VERSION
    installed = set(os.listdir(os.path.join(target, DIST_INFO)))
    assert {"METADATA", "WHEEL", "RECORD", "INSTALLER"} <= installed
    # importlib.metadata reads what pip installed.
    out = import_from(target, "import importlib.metadata as m; d = m.distribution('labhost'); "
                              "print(d.version, d.metadata['Requires-Python'])")
    assert out.split() == [VERSION, ">=3.9"]


def test_pip_wheel_offline(tmp_path):
    out = str(tmp_path / "wheels")
    pip("wheel", "--no-deps", "-w", out, CLIENT_DIR)
    assert os.listdir(out) == [WHEEL_NAME]
    contents = check_wheel(os.path.join(out, WHEEL_NAME), PACKAGE_FILES)
    for name in PACKAGE_FILES:
        with open(os.path.join(CLIENT_DIR, name), "rb") as f:
            assert contents[name] == f.read(), name


def test_sdist_builds_a_wheel_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(CLIENT_DIR)  # hooks run in the source tree
    out = str(tmp_path)
    filename = labhost_build.build_sdist(out)
    assert filename == "%s-%s.tar.gz" % (NAME, VERSION)
    top = "%s-%s/" % (NAME, VERSION)
    with tarfile.open(os.path.join(out, filename)) as sdist:
        files = sorted(m.name[len(top):] for m in sdist.getmembers() if m.isfile())
        pkg_info = sdist.extractfile(top + "PKG-INFO").read()
    assert files == sorted(["PKG-INFO", "README.md", "pyproject.toml",
                            "build_backend/labhost_build.py"] + PACKAGE_FILES)
    assert pkg_info.startswith(b"Metadata-Version: 2.1\nName: labhost\nVersion: " +
                               VERSION.encode() + b"\n")
    # pip unpacks the sdist and builds its wheel with the backend it carries.
    pip("wheel", "--no-deps", "-w", os.path.join(out, "wheels"), os.path.join(out, filename))
    check_wheel(os.path.join(out, "wheels", WHEEL_NAME), PACKAGE_FILES)


def test_editable_wheel(tmp_path, monkeypatch):
    # PEP 660 hook: a .pth naming the source tree, so the installed labhost is this one.
    monkeypatch.chdir(CLIENT_DIR)  # hooks run in the source tree
    out = str(tmp_path / "wheels")
    assert labhost_build.build_editable(out) == WHEEL_NAME
    pth = "__editable__.%s-%s.pth" % (NAME, VERSION)
    contents = check_wheel(os.path.join(out, WHEEL_NAME), [pth])
    assert contents[pth].decode("utf-8") == CLIENT_DIR + "\n"
    site = tmp_path / "site"
    with zipfile.ZipFile(os.path.join(out, WHEEL_NAME)) as wheel:
        wheel.extractall(site)
    out = subprocess.run(
        [sys.executable, "-I", "-c", "import site, sys; site.addsitedir(sys.argv[1]); "
         "import labhost; print(labhost.__file__)", str(site)],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.path.join(CLIENT_DIR, "labhost", "__init__.py")


def test_metadata_hook_matches_wheel(tmp_path, monkeypatch):
    monkeypatch.chdir(CLIENT_DIR)
    assert labhost_build.get_requires_for_build_wheel() == []
    assert labhost_build.get_requires_for_build_sdist() == []
    assert labhost_build.get_requires_for_build_editable() == []
    assert labhost_build.prepare_metadata_for_build_wheel(str(tmp_path)) == DIST_INFO
    wheel_dir = str(tmp_path / "wheels")
    labhost_build.build_wheel(wheel_dir)
    with zipfile.ZipFile(os.path.join(wheel_dir, WHEEL_NAME)) as wheel:
        for name in ("METADATA", "WHEEL"):
            assert (tmp_path / DIST_INFO / name).read_bytes() == wheel.read(DIST_INFO + "/" + name)


TRICKY_TOML = r'''
# The reader the backend uses on Python 3.9 and 3.10, where tomllib does not exist.
title = "TOML \"quoted\" \u00e9 \\ \t"   # trailing comment
[a."b.c".d]
k = 'C:\no\escape'
ml = """
one \
   two ""quote"""""
mll = \'\'\'
raw \n line\'\'\'\'\'
n = -1_000
h = 0xff
f = 3.5e2
t = true
date = 1979-05-27 07:32:00Z
arr = [ 1, [2, 3], # comment
  "x",
]
it = { x = 1, y.z = "w", e = {} }
[[p]]
name = "a"
[[p]]
name = "b"
[p.sub]
q = 1
[tool.other]
"quoted key" = [ {a = 1}, {b = 2} ]
'''.replace(r"\'", "'")


def _dates_as_text(value):
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat().replace("T", " ").replace("+00:00", "Z")
    return value


def test_toml_reader_for_python_before_3_11():
    with open(os.path.join(CLIENT_DIR, "pyproject.toml"), encoding="utf-8") as f:
        pyproject = labhost_build._MiniToml(f.read()).parse()
    assert pyproject["build-system"] == {"requires": [], "build-backend": "labhost_build",
                                         "backend-path": ["build_backend"]}
    assert pyproject["project"]["name"] == "labhost"
    assert pyproject["project"]["license"] == {"text": "Proprietary"}
    tricky = labhost_build._MiniToml(TRICKY_TOML).parse()
    assert tricky["a"]["b.c"]["d"]["ml"] == 'one two ""quote""'
    assert tricky["a"]["b.c"]["d"]["mll"] == "raw \\n line''"
    assert tricky["p"] == [{"name": "a"}, {"name": "b", "sub": {"q": 1}}]
    try:
        import tomllib
    except ImportError:
        return  # the checks above still ran
    with open(os.path.join(CLIENT_DIR, "pyproject.toml"), "rb") as f:
        assert pyproject == tomllib.load(f)
    assert tricky == _dates_as_text(tomllib.loads(TRICKY_TOML))


@pytest.mark.parametrize("text, message", [
    ('[project]\nname = "labhost"\nversion = "0.1.0"\nscripts = {a = "b:c"}\n',
     "does not support [project] keys scripts"),
    ('[project]\nname = "labhost"\nversion = "1.0-beta"\n', "not a normalised PEP 440"),
])
def test_backend_refuses_what_it_cannot_build(text, message):
    with pytest.raises(labhost_build.BackendError, match=message.replace("[", r"\[")):
        labhost_build.Project(CLIENT_DIR, labhost_build.parse_toml(text))
