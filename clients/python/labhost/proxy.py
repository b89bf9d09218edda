"""Service proxies and daemon objects: remote instruments that feel like local objects.

A ServiceProxy's methods come from the daemon's description of the service: each is a real
Python method with the driver's parameter names (``inspect.signature``, ``help()``) and doc
string, and ``dir()`` lists them for tab completion. Each proxy gets its own subclass of
ServiceProxy holding those methods, so ``help(laser)`` shows the instrument's methods.

A method that the driver marks oneway (``describe`` says ``oneway``) is called as a oneway
call: it returns None at once, and a failure goes to the connection's on_oneway_error. The
topics a service publishes are received with ``proxy.stream(topic)`` (the values) or
``proxy.subscribe(topic)`` (whole events).

A driver method whose name is one of ServiceProxy's own (call, call_oneway, describe, topics,
subscribe, stream, lock, unlock, lock_status, locked, force_unlock, close, connection) or
starts with "_" is reached with ``proxy.call("name", ...)``.

The asyncio client's proxies (aio/proxy.py) are built here the same way (proxy_class).
"""

import inspect
import keyword

from . import protocol
from .errors import LabhostError, NoSuchServiceError
from .subscription import Stream

__all__ = ["ServiceProxy", "Daemon", "ProxyBase", "DaemonBase", "Locked", "proxy_class",
           "describe_method"]


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


def describe_method(function, class_name, m):
    """Gives `function`, which calls the driver method `m` (a map of describe's), the
    method's name, doc string and signature."""
    function.__name__ = m["name"]
    function.__qualname__ = "%s.%s" % (class_name, m["name"])
    function.__module__ = __name__
    function.__doc__ = m.get("doc") or "(the driver gives no documentation)"
    if m.get("oneway"):
        function.__doc__ += ("\n\nOneway: returns None at once; a failure goes to the "
                             "connection's on_oneway_error.")
    try:
        function.__signature__ = _signature(m.get("params", []), m.get("returns", ""))
    except (ValueError, TypeError):  # parameter names that are not Python identifiers
        pass
    return function


def _make_method(service, class_name, m):
    oneway = m.get("oneway") is True
    prefix = protocol.call_prefix(service, m["name"], oneway)
    if oneway:
        def method(proxy, /, *args, **kwargs):
            proxy._connection.call_oneway_prefixed(prefix, args, kwargs)
    else:
        def method(proxy, /, *args, **kwargs):
            return proxy._connection.call_prefixed(prefix, args, kwargs)
    return describe_method(method, class_name, m)


def _class_doc(service, description):
    lines = [description.get("description") or "labhost service"]
    driver = description.get("driver", "")
    about = "Service %r, driver %s %s" % (service, driver, description.get("driver_version", ""))
    if description.get("vendor"):
        about += " by %s" % description["vendor"]
    lines += ["", about.rstrip() + "."]
    if description.get("state") and description.get("state") != "ready":
        lines.append("State: %s (%s)." % (description["state"], description.get("reason", "")))
    topics = [t for t in description.get("topics", []) if isinstance(t, dict) and t.get("name")]
    if topics:
        lines += ["", "Topics (stream, subscribe):"]
        lines += ["  %s (%s): %s" % (t["name"], t.get("type", ""), t.get("doc", "")) for t in topics]
    return "\n".join(lines)


def proxy_class(service, description, base, make_method):
    """A subclass of `base` (ServiceProxy, or the asyncio client's) with one method per
    driver method, made by make_method(service, class_name, method's map)."""
    driver = description.get("driver") or service
    class_name = driver if driver.isidentifier() else base.__name__
    reserved = frozenset(name for name in dir(base) if not name.startswith("_"))
    names = []
    ns = {
        "__doc__": _class_doc(service, description),
        "__module__": base.__module__,
        "__slots__": (),
        "_description": description,
        "_method_names": (),
    }
    for m in description.get("methods", []):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            continue
        names.append(m["name"])
        if m["name"].startswith("_") or m["name"] in reserved or keyword.iskeyword(m["name"]):
            continue
        ns[m["name"]] = make_method(service, class_name, m)
    ns["_method_names"] = tuple(names)
    return type(class_name, (base,), ns)


class Locked:
    """``with proxy.locked(wait=5):`` (and ``async with`` for the asyncio client's proxies):
    lock on entry, unlock on exit, even when the block raises."""

    __slots__ = ("proxy", "wait", "status")

    def __init__(self, proxy, wait):
        self.proxy = proxy
        self.wait = wait
        self.status = None

    def __enter__(self):
        self.status = self.proxy.lock(self.wait)
        return self.status

    def __exit__(self, exc_type, exc, tb):
        with _unlocking(exc_type):
            self.proxy.unlock()
        return False

    async def __aenter__(self):
        self.status = await self.proxy.lock(self.wait)
        return self.status

    async def __aexit__(self, exc_type, exc, tb):
        with _unlocking(exc_type):
            await self.proxy.unlock()
        return False


class _unlocking:
    """Around the unlock at the end of a locked block: an error from the block matters more
    than one from the unlock, which is then dropped."""

    __slots__ = ("block_failed",)

    def __init__(self, block_error_type):
        self.block_failed = block_error_type is not None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return self.block_failed and exc_type is not None and issubclass(exc_type, LabhostError)


class ProxyBase:
    """What the sync and asyncio proxies share: their connection and service, the methods
    made from the description, and an AttributeError that lists them."""

    __slots__ = ("_connection", "_service", "_owns", "__weakref__")

    _description = {}
    _method_names = ()

    def __init__(self, connection, service, description=None, owns_connection=False):
        self._connection = connection
        self._service = service
        self._owns = owns_connection

    def __getattr__(self, name):
        if name.startswith("__") or name in ProxyBase.__slots__:
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
        return "<labhost.%s %s/%s (%s %s)>" % (
            self._kind, self._connection.address, self._service, d.get("driver", "?"),
            d.get("driver_version", ""))

    _kind = "ServiceProxy"

    @property
    def connection(self):
        """The connection (session) this proxy calls through."""
        return self._connection


class ServiceProxy(ProxyBase):
    """One service of a daemon, as an object whose methods run on the daemon.

    Made by ``labhost.connect("lab://HOST:PORT/SERVICE")`` (its own connection) or by
    ``daemon["name"]`` (sharing the daemon's connection). Safe to use from several threads
    at once: their calls are in flight together on the one connection.
    """

    __slots__ = ()

    def __new__(cls, connection, service, description=None, owns_connection=False):
        if cls is ServiceProxy:
            if description is None:
                description = connection.describe(service)
            cls = proxy_class(service, description, ServiceProxy, _make_method)
        return object.__new__(cls)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, /, *args, **kwargs):
        """Calls a method by name: ``laser.call("set_wavelength", 1550.5)``."""
        return self._connection.call(self._service, method, args, kwargs)

    def call_oneway(self, method, /, *args, **kwargs):
        """Calls a method by name as a oneway call (Connection.call_oneway): returns None at
        once; a failure goes to the connection's on_oneway_error."""
        self._connection.call_oneway(self._service, method, *args, **kwargs)

    def topics(self):
        """The topics the service publishes: maps {name, type, doc}."""
        return self.describe().get("topics", [])

    def subscribe(self, topic, queue=16, max_rate=0):
        """A Subscription to `topic`: its events (value, seq, dropped, time), in order.
        `queue`: events kept for this subscriber while it cannot take them (1 to 1024, the
        oldest dropped beyond); `max_rate`: at most this many events a second (0: no limit).
        See Connection.subscribe."""
        return self._connection.subscribe(self._service, topic, queue, max_rate)

    def stream(self, topic, queue=16, max_rate=0):
        """The values published on `topic`, as an iterable Stream:
        ``for frame in camera.stream("frames", max_rate=30)``. close() it (or use ``with``)
        to unsubscribe; see subscribe()."""
        return Stream(self.subscribe(topic, queue, max_rate))

    def describe(self):
        """The service's description from the daemon: name, driver, driver_version, vendor,
        description, state, reason, calls_pending, methods (name, params, returns, doc,
        oneway) and topics (name, type, doc)."""
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
        return Locked(self, wait)

    def close(self):
        """Closes the proxy's connection when the proxy made it (labhost.connect): the
        session ends and its locks are released. Proxies of a Daemon share its connection:
        close the Daemon."""
        if self._owns:
            self._connection.close()


class DaemonBase:
    """What the sync and asyncio daemon objects share: the connection, and proxies of its
    services made once each."""

    __slots__ = ("_connection", "_owns", "_proxies", "__weakref__")

    def __init__(self, connection, owns_connection=False):
        self._connection = connection
        self._owns = owns_connection
        self._proxies = {}

    @property
    def connection(self):
        return self._connection

    @property
    def name(self):
        """The daemon's name in host.json."""
        return self._connection.daemon_name


class Daemon(DaemonBase):
    """A daemon: its services, by ``daemon["laser"]`` or ``daemon.laser``."""

    __slots__ = ("_names",)

    def __init__(self, connection, owns_connection=False):
        super().__init__(connection, owns_connection)
        self._names = tuple(self.services())

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

