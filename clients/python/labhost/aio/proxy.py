"""The asyncio client's service proxies and daemon objects: labhost.ServiceProxy and
labhost.Daemon with coroutines. A proxy's methods come from the service's description, with
the driver's parameter names and doc strings (the same classes are built: proxy.proxy_class);
each returns a coroutine: ``await laser.wavelength()``. A method the driver marks oneway is
sent as a oneway call: awaiting it waits only until it is written, and gives None.
"""

from .. import protocol
from ..proxy import DaemonBase, Locked, ProxyBase, describe_method, proxy_class
from .subscription import AsyncStream

__all__ = ["AsyncServiceProxy", "AsyncDaemon"]


def _make_method(service, class_name, m):
    oneway = m.get("oneway") is True
    prefix = protocol.call_prefix(service, m["name"], oneway)
    if oneway:
        async def method(proxy, /, *args, **kwargs):
            await proxy._connection.call_oneway_prefixed(prefix, args, kwargs)
    else:
        async def method(proxy, /, *args, **kwargs):
            return await proxy._connection.call_prefixed(prefix, args, kwargs)
    return describe_method(method, class_name, m)


class AsyncServiceProxy(ProxyBase):
    """One service of a daemon, whose methods are coroutines that run it on the daemon.

    Made by ``await labhost.aio.connect("lab://HOST:PORT/SERVICE")`` (its own connection),
    ``await daemon.service("name")`` (sharing the daemon's) or
    ``await AsyncServiceProxy.create(connection, "name")``. Many calls may be in flight at
    once (asyncio.gather).
    """

    __slots__ = ()
    _kind = "aio.AsyncServiceProxy"

    @classmethod
    async def create(cls, connection, service, owns_connection=False):
        """A proxy of `service`, with the methods its description lists."""
        description = await connection.describe(service)
        proxy_cls = proxy_class(service, description, AsyncServiceProxy, _make_method)
        return proxy_cls(connection, service, description, owns_connection)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def call(self, method, /, *args, **kwargs):
        """Calls a method by name: ``await laser.call("set_wavelength", 1550.5)``."""
        return await self._connection.call(self._service, method, *args, **kwargs)

    async def call_oneway(self, method, /, *args, **kwargs):
        """Calls a method by name as a oneway call (AsyncConnection.call_oneway)."""
        await self._connection.call_oneway(self._service, method, *args, **kwargs)

    async def describe(self):
        """The service's description from the daemon (see ServiceProxy.describe)."""
        return await self._connection.describe(self._service)

    async def topics(self):
        """The topics the service publishes: maps {name, type, doc}."""
        return (await self.describe()).get("topics", [])

    async def subscribe(self, topic, queue=16, max_rate=0):
        """An AsyncSubscription to `topic` (see ServiceProxy.subscribe)."""
        return await self._connection.subscribe(self._service, topic, queue, max_rate)

    def stream(self, topic, queue=16, max_rate=0):
        """The values published on `topic`: ``async for frame in camera.stream("frames")``
        (an AsyncStream; it subscribes when first iterated, or on ``async with``)."""
        return AsyncStream(self._connection, self._service, topic, queue, max_rate)

    async def lock(self, wait=0.0):
        """Locks the service for this session, waiting up to `wait` seconds for another
        session's lock. Returns a LockStatus."""
        return await self._connection.lock(self._service, wait)

    async def unlock(self):
        await self._connection.unlock(self._service)

    async def force_unlock(self, admin_secret):
        await self._connection.force_unlock(self._service, admin_secret)

    async def lock_status(self):
        return await self._connection.lock_status(self._service)

    def locked(self, wait=5.0):
        """``async with laser.locked(wait=5):`` locks for the block."""
        return Locked(self, wait)

    async def close(self):
        """Closes the proxy's connection when the proxy made it (labhost.aio.connect)."""
        if self._owns:
            await self._connection.close()


class AsyncDaemon(DaemonBase):
    """A daemon: ``await daemon.service("laser")``, ``await daemon.services()``."""

    __slots__ = ()

    async def services(self):
        """Names of the daemon's services."""
        return [s["name"] for s in (await self._connection.describe()).get("services", [])]

    async def describe(self, service=""):
        return await self._connection.describe(service)

    async def ping(self):
        return await self._connection.ping()

    async def lock_status(self):
        return await self._connection.lock_status()

    async def service(self, name):
        """A proxy of one service, sharing this daemon's connection. Errors:
        NoSuchServiceError."""
        proxy = self._proxies.get(name)
        if proxy is None:
            proxy = await AsyncServiceProxy.create(self._connection, name)
            self._proxies[name] = proxy
        return proxy

    def __repr__(self):
        return "<labhost.aio.AsyncDaemon at %s>" % self._connection.address

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        if self._owns:
            await self._connection.close()
