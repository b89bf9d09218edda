"""PEP 517 / PEP 660 build backend of the labhost Python client: standard library only.

pip builds the package with it offline: pyproject.toml names it with `requires = []` and
`backend-path = ["build_backend"]`, so the isolated build environment needs nothing from an
index. It builds

- a wheel (PEP 427): the import package, plus `NAME-VERSION.dist-info/` with METADATA
  (core metadata 2.1), WHEEL and RECORD;
- an sdist: pyproject.toml, the readme, the import package and this backend, plus PKG-INFO;
- an editable wheel (PEP 660): a .pth file that puts the source tree on sys.path.

Everything comes from pyproject.toml's [project] table (name, version, description, readme,
requires-python, license, dependencies, optional-dependencies, classifiers, keywords,
authors, maintainers, urls). The import package is the directory named after the project
(`-` and `.` as `_`); its `__version__`, when it sets one, must equal [project] version.
The hooks run on Python 3.9 and newer: tomllib where it exists (3.11+), else the small TOML
reader below. SOURCE_DATE_EPOCH, when set, fixes every timestamp (reproducible builds).
"""

import base64
import csv
import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import time
import zipfile

__all__ = [
    "get_requires_for_build_wheel", "get_requires_for_build_sdist",
    "get_requires_for_build_editable", "prepare_metadata_for_build_wheel",
    "prepare_metadata_for_build_editable", "build_wheel", "build_sdist", "build_editable",
]

GENERATOR = "labhost_build 1.0"
WHEEL_TAG = "py3-none-any"
BACKEND_DIR = os.path.basename(os.path.dirname(os.path.abspath(__file__)))

# [project] keys this backend turns into metadata; any other key is refused, not ignored.
SUPPORTED_PROJECT_KEYS = {
    "name", "version", "description", "readme", "requires-python", "license",
    "dependencies", "optional-dependencies", "classifiers", "keywords", "authors",
    "maintainers", "urls",
}
SKIPPED_NAMES = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


# --- PEP 517 / PEP 660 hooks -----------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = Project.load()
    dist_info = project.dist_info
    path = os.path.join(metadata_directory, dist_info)
    os.makedirs(path, exist_ok=True)
    for name, data in project.dist_info_files():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    return dist_info


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = Project.load()
    files = [(arcname, _read(path), _mode(path), _mtime(path))
             for arcname, path in project.package_files()]
    return _write_wheel(project, wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    project = Project.load()
    if "\n" in project.root or "\r" in project.root:
        raise BackendError("cannot install editable from a path holding a line break: %r"
                           % project.root)
    pth = "__editable__.%s-%s.pth" % (project.filename_name, project.version)
    files = [(pth, (project.root + "\n").encode("utf-8"), 0o644, _now())]
    return _write_wheel(project, wheel_directory, files)


def build_sdist(sdist_directory, config_settings=None):
    project = Project.load()
    base = "%s-%s" % (project.filename_name, project.version)
    filename = base + ".tar.gz"
    members = [(base + "/" + arcname, _read(path), _mode(path), _mtime(path))
               for arcname, path in project.sdist_files()]
    members.append((base + "/PKG-INFO", project.metadata(), 0o644, _now()))
    members.sort(key=lambda m: m[0])

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = set()
        for name, _, _, mtime in members:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/".join(parts[:i])
                if directory not in directories:
                    directories.add(directory)
                    info = _tarinfo(directory, tarfile.DIRTYPE, 0o755, mtime)
                    tar.addfile(info)
        for name, data, mode, mtime in members:
            info = _tarinfo(name, tarfile.REGTYPE, mode, mtime)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=_now()) as gz:
        gz.write(buffer.getvalue())
    _write_atomically(os.path.join(sdist_directory, filename), compressed.getvalue())
    return filename


# --- The project -----------------------------------------------------------------------------

class BackendError(Exception):
    """pyproject.toml or the source tree is not something this backend can build."""


class Project:
    def __init__(self, root, pyproject):
        self.root = root
        project = pyproject.get("project")
        if not isinstance(project, dict):
            raise BackendError("pyproject.toml has no [project] table")
        unsupported = sorted(set(project) - SUPPORTED_PROJECT_KEYS)
        if unsupported:
            raise BackendError("%s does not support [project] keys %s; extend it in %s"
                               % (GENERATOR, ", ".join(unsupported), __file__))
        self.project = project
        self.name = self._string("name")
        if not re.match(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$", self.name):
            raise BackendError("[project] name %r is not a valid project name" % self.name)
        self.version = self._string("version")
        if not re.match(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?"
                        r"(\+[a-z0-9]+(\.[a-z0-9]+)*)?$", self.version):
            raise BackendError("[project] version %r is not a normalised PEP 440 version"
                               % self.version)
        # Distribution name in file names (binary distribution format, sdist format).
        self.filename_name = re.sub(r"[-_.]+", "_", self.name).lower()
        self.dist_info = "%s-%s.dist-info" % (self.filename_name, self.version)
        self.package = re.sub(r"[-.]", "_", self.name)
        package_dir = os.path.join(root, self.package)
        if not os.path.isfile(os.path.join(package_dir, "__init__.py")):
            raise BackendError("no import package %s/ (with __init__.py) in %s"
                               % (self.package, root))
        self._check_package_version(os.path.join(package_dir, "__init__.py"))
        build_system = pyproject.get("build-system", {})
        self.backend_path = list(build_system.get("backend-path", []))

    @classmethod
    def load(cls, root=None):
        # PEP 517: hooks run with the source tree as the working directory.
        root = os.path.abspath(root or os.getcwd())
        path = os.path.join(root, "pyproject.toml")
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        return cls(root, parse_toml(text))

    def _string(self, key, required=True):
        value = self.project.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise BackendError("[project] %s must be a non-empty string" % key)
        return value.strip()

    def _strings(self, key, table=None):
        table = self.project if table is None else table
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BackendError("[project] %s must be an array of strings" % key)
        return value

    def _check_package_version(self, init_path):
        with open(init_path, encoding="utf-8") as f:
            match = re.search(r"""^__version__\s*=\s*["']([^"']*)["']""", f.read(), re.M)
        if match and match.group(1) != self.version:
            raise BackendError("%s sets __version__ = %r but pyproject.toml [project] version "
                               "is %r: make them equal" % (init_path, match.group(1),
                                                           self.version))

    # Core metadata 2.1 (METADATA in the wheel, PKG-INFO in the sdist).
    def metadata(self):
        fields = [("Metadata-Version", "2.1"), ("Name", self.name),
                  ("Version", self.version)]
        description = self._string("description", required=False)
        if description:
            if "\n" in description:
                raise BackendError("[project] description must be one line")
            fields.append(("Summary", description))
        keywords = self._strings("keywords")
        if keywords:
            fields.append(("Keywords", ",".join(keywords)))
        for key, field in (("authors", "Author"), ("maintainers", "Maintainer")):
            names, emails = self._people(key)
            if names:
                fields.append((field, ", ".join(names)))
            if emails:
                fields.append((field + "-email", ", ".join(emails)))
        license_text = self._license()
        if license_text:
            fields.append(("License", license_text))
        for classifier in self._strings("classifiers"):
            fields.append(("Classifier", classifier))
        urls = self.project.get("urls", {})
        if not isinstance(urls, dict):
            raise BackendError("[project.urls] must be a table")
        for label, url in urls.items():
            fields.append(("Project-URL", "%s, %s" % (label, url)))
        requires_python = self._string("requires-python", required=False)
        if requires_python:
            fields.append(("Requires-Python", requires_python))
        for requirement in self._strings("dependencies"):
            fields.append(("Requires-Dist", requirement))
        extras = self.project.get("optional-dependencies", {})
        if not isinstance(extras, dict):
            raise BackendError("[project.optional-dependencies] must be a table")
        for extra, requirements in extras.items():
            if not re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", extra):
                raise BackendError("extra name %r is not normalised (lower case, -)" % extra)
            fields.append(("Provides-Extra", extra))
            for requirement in self._strings(extra, extras):
                fields.append(("Requires-Dist", _with_extra_marker(requirement, extra)))
        readme, content_type = self._readme()
        if readme is not None:
            fields.append(("Description-Content-Type", content_type))

        lines = []
        for field, value in fields:
            value = str(value)
            if ("\n" in value and field != "License") or "\r" in value:
                raise BackendError("metadata field %s must be one line: %r" % (field, value))
            lines.append("%s: %s\n" % (field, value))
        text = "".join(lines)
        if readme is not None:
            text += "\n" + readme
            if not readme.endswith("\n"):
                text += "\n"
        return text.encode("utf-8")

    def _people(self, key):
        names, emails = [], []
        for person in self.project.get(key, []):
            if not isinstance(person, dict):
                raise BackendError("[project] %s must be an array of tables" % key)
            name, email = person.get("name"), person.get("email")
            if email and name:
                emails.append("%s <%s>" % (name, email))
            elif email:
                emails.append(email)
            elif name:
                names.append(name)
        return names, emails

    def _license(self):
        value = self.project.get("license")
        if value is None:
            return None
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            text = value["text"].strip()
        elif isinstance(value, dict) and isinstance(value.get("file"), str):
            with open(os.path.join(self.root, value["file"]), encoding="utf-8") as f:
                text = f.read().strip()
        else:
            raise BackendError('[project] license must be {text = "..."} or {file = "..."}')
        # A multi-line licence goes in folded form (continuation lines indented).
        return "\n        ".join(text.splitlines()) if "\n" in text else text

    def _readme(self):
        value = self.project.get("readme")
        if value is None:
            return None, None
        content_type = None
        if isinstance(value, str):
            path = value
        elif isinstance(value, dict):
            content_type = value.get("content-type")
            if isinstance(value.get("text"), str):
                if not content_type:
                    raise BackendError("[project] readme text needs a content-type")
                return value["text"], content_type
            path = value.get("file")
            if not isinstance(path, str):
                raise BackendError("[project] readme table needs file or text")
        else:
            raise BackendError("[project] readme must be a path or a table")
        if not content_type:
            suffix = os.path.splitext(path)[1].lower()
            content_type = {".md": "text/markdown", ".rst": "text/x-rst",
                            ".txt": "text/plain"}.get(suffix)
            if content_type is None:
                raise BackendError("[project] readme %s: unknown type, give content-type" % path)
        with open(os.path.join(self.root, path), encoding="utf-8") as f:
            return f.read(), content_type

    def wheel_metadata(self):
        return ("Wheel-Version: 1.0\nGenerator: %s\nRoot-Is-Purelib: true\nTag: %s\n"
                % (GENERATOR, WHEEL_TAG)).encode("utf-8")

    def dist_info_files(self):
        return [("METADATA", self.metadata()), ("WHEEL", self.wheel_metadata())]

    # (archive name, path) of the files a wheel or an sdist holds, in sorted order.
    def package_files(self):
        return self._tree(self.package)

    def sdist_files(self):
        files = [("pyproject.toml", os.path.join(self.root, "pyproject.toml"))]
        for key in ("readme", "license"):
            value = self.project.get(key)
            path = value if isinstance(value, str) else (
                value.get("file") if isinstance(value, dict) else None)
            if path:
                files.append((path.replace(os.sep, "/"), os.path.join(self.root, path)))
        files += self.package_files()
        for directory in self.backend_path:
            files += self._tree(os.path.normpath(directory))
        unique = dict(files)
        return sorted(unique.items())

    def _tree(self, relative):
        top = os.path.join(self.root, relative)
        found = []
        for directory, subdirs, names in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs
                                if d not in SKIPPED_NAMES and not d.endswith(".egg-info"))
            for name in sorted(names):
                if name.endswith(SKIPPED_SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                if not os.path.isfile(path):
                    continue
                arcname = os.path.relpath(path, self.root).replace(os.sep, "/")
                found.append((arcname, path))
        return found


def _with_extra_marker(requirement, extra):
    marker = 'extra == "%s"' % extra
    if ";" in requirement:
        spec, existing = requirement.split(";", 1)
        return "%s; (%s) and %s" % (spec.strip(), existing.strip(), marker)
    return "%s; %s" % (requirement.strip(), marker)


# --- Archives --------------------------------------------------------------------------------

def _write_wheel(project, wheel_directory, files):
    """files: (archive name, bytes, mode, mtime); the .dist-info files are added here."""
    filename = "%s-%s-%s.whl" % (project.filename_name, project.version, WHEEL_TAG)
    dist_info = project.dist_info
    now = _now()
    entries = list(files)
    entries += [(dist_info + "/" + name, data, 0o644, now)
                for name, data in project.dist_info_files()]

    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data, _, _ in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        writer.writerow([arcname, "sha256=" + digest.decode("ascii"), len(data)])
    writer.writerow([dist_info + "/RECORD", "", ""])
    entries.append((dist_info + "/RECORD", record.getvalue().encode("utf-8"), 0o644, now))

    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        raise BackendError("duplicate file names in the wheel: %s" % names)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for arcname, data, mode, mtime in entries:
            info = zipfile.ZipInfo(arcname, date_time=_zip_time(mtime))
            info.external_attr = (stat.S_IFREG | (mode & 0o777)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that the mode bits are honoured
            wheel.writestr(info, data)
    _write_atomically(os.path.join(wheel_directory, filename), buffer.getvalue())
    return filename


def _tarinfo(name, kind, mode, mtime):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_atomically(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _mode(path):
    return 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644


def _source_date_epoch():
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.strip().isdigit() else None


def _now():
    epoch = _source_date_epoch()
    return epoch if epoch is not None else int(time.time())


def _mtime(path):
    epoch = _source_date_epoch()
    return epoch if epoch is not None else int(os.stat(path).st_mtime)


def _zip_time(timestamp):
    # ZIP stores local-less DOS times from 1980 on.
    return time.gmtime(max(int(timestamp), 315532800))[:6]


# --- TOML ------------------------------------------------------------------------------------

def parse_toml(text):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return _MiniToml(text).parse()
    return tomllib.loads(text)


class _MiniToml:
    """Reads the TOML of a pyproject.toml on Python 3.9 and 3.10: tables, arrays of tables,
    dotted and quoted keys, all four kinds of strings, integers, floats, booleans, arrays and
    inline tables. Dates and times are kept as their text. Not a validator: it trusts that
    the file is TOML (every other tool reading pyproject.toml checks that)."""

    _ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
    _BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
    _SCALAR = re.compile(
        r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)?)?"
        r"|\d\d:\d\d:\d\d(?:\.\d+)?"
        r"|[+-]?[0-9A-Za-z_.+-]+")

    def __init__(self, text):
        self.s = text.replace("\r\n", "\n")
        self.i = 0

    def error(self, message):
        line = self.s.count("\n", 0, self.i) + 1
        raise BackendError("pyproject.toml line %d: %s" % (line, message))

    def parse(self):
        root = {}
        current = root
        while True:
            self._skip(newlines=True)
            if self.i >= len(self.s):
                return root
            if self.s.startswith("[[", self.i):
                self.i += 2
                keys = self._keys()
                self._expect("]]")
                parent = self._walk(root, keys[:-1])
                array = parent.setdefault(keys[-1], [])
                if not isinstance(array, list):
                    self.error("%s is not an array of tables" % ".".join(keys))
                current = {}
                array.append(current)
            elif self.s.startswith("[", self.i):
                self.i += 1
                keys = self._keys()
                self._expect("]")
                current = self._walk(root, keys)
            else:
                self._key_value(current)
            self._end_of_line()

    def _walk(self, table, keys):
        for key in keys:
            table = table.setdefault(key, {})
            if isinstance(table, list):
                table = table[-1]
            if not isinstance(table, dict):
                self.error("%s is not a table" % key)
        return table

    def _key_value(self, table):
        keys = self._keys()
        self._expect("=")
        self._skip()
        value = self._value()
        parent = self._walk(table, keys[:-1])
        if keys[-1] in parent:
            self.error("%s is defined twice" % ".".join(keys))
        parent[keys[-1]] = value

    def _keys(self):
        keys = []
        while True:
            self._skip()
            c = self.s[self.i:self.i + 1]
            if c == '"':
                keys.append(self._basic_string())
            elif c == "'":
                keys.append(self._literal_string())
            else:
                match = self._BARE_KEY.match(self.s, self.i)
                if not match:
                    self.error("expected a key")
                keys.append(match.group())
                self.i = match.end()
            self._skip()
            if self.s.startswith(".", self.i):
                self.i += 1
            else:
                return keys

    def _value(self):
        s, i = self.s, self.i
        if s.startswith('"""', i):
            return self._multiline_basic_string()
        if s.startswith("'''", i):
            return self._multiline_literal_string()
        if s.startswith('"', i):
            return self._basic_string()
        if s.startswith("'", i):
            return self._literal_string()
        if s.startswith("[", i):
            return self._array()
        if s.startswith("{", i):
            return self._inline_table()
        match = self._SCALAR.match(s, i)
        if not match:
            self.error("expected a value")
        self.i = match.end()
        token = match.group()
        if token in ("true", "false"):
            return token == "true"
        if token in ("inf", "+inf", "-inf", "nan", "+nan", "-nan"):
            return float(token)
        plain = token.replace("_", "")
        try:
            return int(plain, 0) if plain[:2] in ("0x", "0o", "0b") else int(plain)
        except ValueError:
            pass
        try:
            return float(plain)
        except ValueError:
            pass
        if token[:1].isdigit():
            return token  # a date or time, kept as text
        self.error("unexpected %r" % token)

    def _array(self):
        self.i += 1
        items = []
        while True:
            self._skip(newlines=True)
            if self.s.startswith("]", self.i):
                self.i += 1
                return items
            items.append(self._value())
            self._skip(newlines=True)
            if self.s.startswith(",", self.i):
                self.i += 1
            elif not self.s.startswith("]", self.i):
                self.error("expected , or ] in an array")

    def _inline_table(self):
        self.i += 1
        table = {}
        self._skip()
        if self.s.startswith("}", self.i):
            self.i += 1
            return table
        while True:
            self._key_value(table)
            self._skip()
            if self.s.startswith(",", self.i):
                self.i += 1
            elif self.s.startswith("}", self.i):
                self.i += 1
                return table
            else:
                self.error("expected , or } in an inline table")

    def _basic_string(self):
        self.i += 1
        out = []
        while True:
            c = self.s[self.i:self.i + 1]
            if c == "" or c == "\n":
                self.error("unterminated string")
            self.i += 1
            if c == '"':
                return "".join(out)
            out.append(self._escape() if c == "\\" else c)

    def _escape(self):
        c = self.s[self.i:self.i + 1]
        self.i += 1
        if c in self._ESCAPES:
            return self._ESCAPES[c]
        if c in ("u", "U"):
            width = 4 if c == "u" else 8
            digits = self.s[self.i:self.i + width]
            self.i += width
            try:
                return chr(int(digits, 16))
            except ValueError:
                self.error("bad \\%s escape" % c)
        self.error("bad escape \\%s" % c)

    def _literal_string(self):
        end = self.s.find("'", self.i + 1)
        if end < 0 or "\n" in self.s[self.i:end]:
            self.error("unterminated string")
        value = self.s[self.i + 1:end]
        self.i = end + 1
        return value

    def _multiline_basic_string(self):
        self.i += 3
        if self.s.startswith("\n", self.i):
            self.i += 1
        out = []
        while True:
            if self.i >= len(self.s):
                self.error("unterminated string")
            if self.s.startswith('"""', self.i):
                extra = 0  # up to two quotes may end the content: """"" is "" + """
                while extra < 2 and self.s.startswith('"', self.i + 3 + extra):
                    extra += 1
                out.append('"' * extra)
                self.i += 3 + extra
                return "".join(out)
            c = self.s[self.i]
            self.i += 1
            if c != "\\":
                out.append(c)
                continue
            rest = re.match(r"[ \t]*\n", self.s[self.i:])
            if rest:  # line-ending backslash: drop the newline and following blanks
                self.i += rest.end()
                while self.i < len(self.s) and self.s[self.i] in " \t\n":
                    self.i += 1
            else:
                out.append(self._escape())

    def _multiline_literal_string(self):
        start = self.i + 3
        if self.s.startswith("\n", start):
            start += 1
        end = self.s.find("'''", start)
        if end < 0:
            self.error("unterminated string")
        extra = 0  # up to two quotes may end the content, as in basic strings
        while extra < 2 and self.s.startswith("'", end + 3 + extra):
            extra += 1
        value = self.s[start:end + extra]
        self.i = end + 3 + extra
        return value

    def _skip(self, newlines=False):
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                return

    def _expect(self, token):
        self._skip()
        if not self.s.startswith(token, self.i):
            self.error("expected %r" % token)
        self.i += len(token)

    def _end_of_line(self):
        self._skip()
        if self.i < len(self.s) and self.s[self.i] != "\n":
            self.error("unexpected text after a value")
