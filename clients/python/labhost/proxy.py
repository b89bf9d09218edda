"""Service proxies and daemon objects: remote instruments that feel like local objects.

A ServiceProxy's methods come from the daemon's description of the service: each is a real
Python method with the driver's parameter names (``inspect.signature``, ``help()``) and doc
string, and ``dir()`` lists them for tab completion. Each proxy gets its own subclass of
ServiceProxy holding those methods, so ``help(laser)`` shows the instrument's methods.

A driver method whose name is one of ServiceProxy's own (call, describe, lock, unlock,
lock_status, locked, force_unlock, close, connection) or starts with "_" is reached with
``proxy.call("name", ...)``.
"""

import inspect
import keyword

from . import protocol
from .errors import LabhostError, NoSuchServiceError

__all__ = ["ServiceProxy", "Daemon"]


class _TypeName(str):
    """A type name from describe ("float64", "array<uint16>"), shown bare in signatures."""

    def __repr__(self):
        return str(self)


def _signature(params, returns):
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for p in params:
        parameters.append(inspect.Parameter(
            p["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=_TypeName(p.get("type") or "any")))
    if returns == "null":
        return_annotation = None
    elif returns:
        return_annotation = _TypeName(returns)
    else:
        return_annotation = inspect.Signature.empty
    return inspect.Signature(parameters, return_annotation=return_annotation)


def _make_method(service, class_name, m):
    prefix = protocol.call_prefix(service, m["name"])

    def method(proxy, /, *args, **kwargs):
        return proxy._connection.call_prefixed(prefix, args, kwargs)

    method.__name__ = m["name"]
    method.__qualname__ = "%s.%s" % (class_name, m["name"])
    method.__module__ = __name__
    method.__doc__ = m.get("doc") or "(the driver gives no documentation)"
    try:
        method.__signature__ = _signature(m.get("params", []), m.get("returns", ""))
    except (ValueError, TypeError):  # parameter names that are not Python identifiers
        pass
    return method


def _class_doc(service, description):
    lines = [description.get("description") or "labhost service"]
    driver = description.get("driver", "")
    about = "Service %r, driver %s %s" % (service, driver, description.get("driver_version", ""))
    if description.get("vendor"):
        about += " by %s" % description["vendor"]
    lines += ["", about.rstrip() + "."]
    if description.get("state") and description.get("state") != "ready":
        lines.append("State: %s (%s)." % (description["state"], description.get("reason", "")))
    return "\n".join(lines)


def _proxy_class(service, description):
    """A subclass of ServiceProxy with one method per driver method."""
    driver = description.get("driver") or service
    class_name = driver if driver.isidentifier() else "ServiceProxy"
    names = []
    ns = {
        "__doc__": _class_doc(service, description),
        "__module__": __name__,
        "__slots__": (),
        "_description": description,
        "_method_names": (),
    }
    for m in description.get("methods", []):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            continue
        names.append(m["name"])
        if m["name"].startswith("_") or m["name"] in _RESERVED or keyword.iskeyword(m["name"]):
            continue
        ns[m["name"]] = _make_method(service, class_name, m)
    ns["_method_names"] = tuple(names)
    return type(class_name, (ServiceProxy,), ns)


class _Locked:
    """``with proxy.locked(wait=5):``: lock on entry, unlock on exit."""

    __slots__ = ("proxy", "wait", "status")

    def __init__(self, proxy, wait):
        self.proxy = proxy
        self.wait = wait
        self.status = None

    def __enter__(self):
        self.status = self.proxy.lock(self.wait)
        return self.status

    def __exit__(self, exc_type, exc, tb):
        try:
            self.proxy.unlock()
        except LabhostError:
            if exc_type is None:  # an error from the block matters more than this one
                raise
        return False


class ServiceProxy:
    """One service of a daemon, as an object whose methods run on the daemon.

    Made by ``labhost.connect("lab://HOST:PORT/SERVICE")`` (its own connection) or by
    ``daemon["name"]`` (sharing the daemon's connection). Safe to use from several threads
    at once: their calls are in flight together on the one connection.
    """

    __slots__ = ("_connection", "_service", "_owns", "__weakref__")

    _description = {}
    _method_names = ()

    def __new__(cls, connection, service, description=None, owns_connection=False):
        if cls is ServiceProxy:
            if description is None:
                description = connection.describe(service)
            cls = _proxy_class(service, description)
        return object.__new__(cls)

    def __init__(self, connection, service, description=None, owns_connection=False):
        self._connection = connection
        self._service = service
        self._owns = owns_connection

    def __getattr__(self, name):
        if name.startswith("__") or name in ServiceProxy.__slots__:
            raise AttributeError(name)
        methods = type(self)._method_names
        description = type(self)._description
        if name in methods:
            raise AttributeError("%r is a method of %s but a name of the proxy too: use "
                                 ".call(%r, ...)" % (name, self._service, name))
        detail = "its methods: %s" % ", ".join(methods) if methods else "it has no methods"
        if description.get("state") not in (None, "", "ready"):
            detail += " (service %s: %s)" % (description.get("state"), description.get("reason", ""))
        raise AttributeError("service %r (%s) has no method %r; %s"
                             % (self._service, description.get("driver", "?"), name, detail))

    def __repr__(self):
        d = type(self)._description
        return "<labhost.ServiceProxy %s/%s (%s %s)>" % (
            self._connection.address, self._service, d.get("driver", "?"), d.get("driver_version", ""))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def connection(self):
        """The Connection (session) this proxy calls through."""
        return self._connection

    def call(self, method, /, *args, **kwargs):
        """Calls a method by name: ``laser.call("set_wavelength", 1550.5)``."""
        return self._connection.call(self._service, method, args, kwargs)

    def describe(self):
        """The service's description from the daemon: name, driver, driver_version, vendor,
        description, state, reason, methods (name, params, returns, doc)."""
        return self._connection.describe(self._service)

    def lock(self, wait=0.0):
        """Locks the service for this session, waiting up to `wait` seconds for another
        session's lock. Returns a LockStatus. Errors: LockedError, NotLockableError."""
        return self._connection.lock(self._service, wait)

    def unlock(self):
        """Releases this session's lock. Errors: NotLockOwnerError."""
        self._connection.unlock(self._service)

    def force_unlock(self, admin_secret):
        """Releases another session's lock (administrators). Errors: NotAuthorisedError."""
        self._connection.force_unlock(self._service, admin_secret)

    def lock_status(self):
        """Who holds the service's lock, as a LockStatus."""
        return self._connection.lock_status(self._service)

    def locked(self, wait=5.0):
        """Context manager: ``with laser.locked(wait=5):`` locks for the block."""
        return _Locked(self, wait)

    def close(self):
        """Closes the proxy's connection when the proxy made it (labhost.connect): the
        session ends and its locks are released. Proxies of a Daemon share its connection:
        close the Daemon."""
        if self._owns:
            self._connection.close()


class Daemon:
    """A daemon: its services, by ``daemon["laser"]`` or ``daemon.laser``."""

    __slots__ = ("_connection", "_owns", "_proxies", "_names", "__weakref__")

    def __init__(self, connection, owns_connection=False):
        self._connection = connection
        self._owns = owns_connection
        self._proxies = {}
        self._names = tuple(self.services())

    @property
    def connection(self):
        return self._connection

    @property
    def name(self):
        """The daemon's name in host.json."""
        return self._connection.daemon_name

    def services(self):
        """Names of the daemon's services."""
        return [s["name"] for s in self._connection.describe().get("services", [])]

    def describe(self, service=""):
        """The daemon's description (daemon, services), or one service's."""
        return self._connection.describe(service)

    def ping(self):
        """Round trip of one ping, in seconds."""
        return self._connection.ping()

    def lock_status(self):
        """LockStatus of every service."""
        return self._connection.lock_status()

    def service(self, name):
        """A proxy of one service, sharing this daemon's connection."""
        proxy = self._proxies.get(name)
        if proxy is None:
            proxy = ServiceProxy(self._connection, name)
            self._proxies[name] = proxy
        return proxy

    def __getitem__(self, name):
        return self.service(name)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.service(name)
        except NoSuchServiceError as e:
            raise AttributeError("daemon %r has no service %r (it has: %s)"
                                 % (self.name, name, ", ".join(self._names))) from e

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | {n for n in self._names if n.isidentifier()})

    def __iter__(self):
        return iter(self.services())

    def __repr__(self):
        return "<labhost.Daemon %r at %s>" % (self.name, self._connection.address)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Closes the daemon's connection (and so its proxies')."""
        if self._owns:
            self._connection.close()


_RESERVED = frozenset(name for name in dir(ServiceProxy) if not name.startswith("_"))
