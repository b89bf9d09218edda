"""labhost.aio: the labhost client for asyncio.

    import asyncio
    import labhost.aio

    async def main():
        laser = await labhost.aio.connect("lab://127.0.0.1:7701/laser")
        await laser.set_wavelength(1550.5)
        print(await laser.wavelength())
        camera = await labhost.aio.connect("lab://127.0.0.1:7702/camera")
        async for frame in camera.stream("frames", max_rate=30):   # numpy (2048, 2048)
            ...
        conn = await labhost.aio.connect_daemon("lab://127.0.0.1:7701")
        sums = await asyncio.gather(*(conn.call("echo", "add", i, 1) for i in range(100)))
        await conn.close()

    asyncio.run(main())

The same client as labhost's (values, errors, options, sessions, the rules of
docs/clients.md), with coroutines, on one event loop: many calls in flight at once on one
connection, events delivered as they arrive, heartbeats from a task. Pure standard library,
like the rest of the package; it shares the codec, the protocol, the events and the errors
with the sync client. See clients/python/README.md.
"""

from ..address import parse_address
from ..events import Event
from .connection import AsyncConnection
from .proxy import AsyncDaemon, AsyncServiceProxy
from .subscription import AsyncStream, AsyncSubscription

__all__ = ["connect", "connect_daemon", "AsyncConnection", "AsyncServiceProxy", "AsyncDaemon",
           "AsyncSubscription", "AsyncStream", "Event"]


async def connect(address, **options):
    """Connects to a service or a daemon, as labhost.connect: ``lab://HOST:PORT/SERVICE``
    gives an AsyncServiceProxy with its own connection, ``lab://HOST:PORT`` an AsyncDaemon.
    The options are AsyncConnection's (timeout, client_name, secret, tls_ca, ...). Close it
    with ``await proxy.close()``, or use ``async with``."""
    a = parse_address(address)
    connection = await AsyncConnection(a.host, a.port, **options).open()
    try:
        if a.service:
            return await AsyncServiceProxy.create(connection, a.service, owns_connection=True)
        return AsyncDaemon(connection, owns_connection=True)
    except BaseException:
        await connection.close()
        raise


async def connect_daemon(address, **options):
    """An open AsyncConnection to the daemon of a ``lab://HOST:PORT[/SERVICE]`` address:
    ``await conn.call(service, method, *args, **kwargs)``."""
    return await AsyncConnection.connect(address, **options)
