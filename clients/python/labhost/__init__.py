"""labhost: call lab instruments served by labhost daemons as if they were local objects.

    import labhost
    laser = labhost.connect("lab://127.0.0.1:7701/laser")
    laser.set_wavelength(1550.5)
    with laser.locked(wait=5):
        laser.set_power(mw=2.0)
    meter = labhost.locate("powermeter")       # found by name on the nameserver
    for d in labhost.discover():               # daemons announced on the LAN (mDNS, DNS-SD)
        print(d.name, d.lab_address("laser"))
    for frame in camera.stream("frames", max_rate=30):   # published frames, numpy (2048, 2048)
        ...

Pure standard library; numpy is used when installed (typed arrays arrive as numpy arrays of
their shape without a copy). labhost.aio is the same client for asyncio. See
clients/python/README.md.
"""

from .address import Address, parse_address
from .connection import Connection, default_client_name, secret_from_environment, tls_context
from .discovery import LanDaemon, discover
from .events import Event
from .errors import (AuthFailedError, BadAddressError, BadArgumentsError, BadFrameError,
                     BadMessageError, BusyError, ConnectionLostError, DriverError,
                     InternalError, LabhostError, LabhostTimeoutError, LockedError,
                     LockedOutError, NameTakenError, NoSuchMethodError, NoSuchNameError,
                     NoSuchServiceError, NoSuchSessionError, NoSuchSubscriptionError,
                     NoSuchTopicError, NotAuthorisedError,
                     NotLockableError, NotLockOwnerError, ServiceUnavailableError,
                     ShuttingDownError, TlsRequiredError, UnsupportedVersionError,
                     error_class)
from .locks import LockStatus
from .naming import NameRecord, default_nameserver, locate, lookup, names
from .proxy import Daemon, ServiceProxy
from .subscription import Stream, Subscription

__version__ = "0.1.0"

__all__ = [
    "connect", "locate", "names", "lookup", "NameRecord", "default_nameserver",
    "discover", "LanDaemon",
    "Connection", "ServiceProxy", "Daemon", "LockStatus", "Address", "Subscription", "Stream",
    "Event",
    "parse_address", "default_client_name", "secret_from_environment", "tls_context",
    "error_class",
    "LabhostError", "BadFrameError", "UnsupportedVersionError", "NoSuchServiceError",
    "NoSuchMethodError", "BadArgumentsError", "DriverError", "ServiceUnavailableError",
    "BusyError", "LabhostTimeoutError", "ShuttingDownError", "InternalError",
    "BadMessageError", "LockedError", "NotLockOwnerError", "NotLockableError",
    "LockedOutError", "NoSuchSessionError", "NoSuchTopicError", "NoSuchSubscriptionError",
    "AuthFailedError", "NotAuthorisedError",
    "TlsRequiredError",
    "NameTakenError", "NoSuchNameError", "ConnectionLostError", "BadAddressError",
]


def connect(address, timeout=None, client_name=None, secret=None, tls_ca=None, tls_cert=None,
            tls_key=None, ssl_context=None, **options):
    """Connects to a service or a daemon.

    ``connect("lab://HOST:PORT/SERVICE")`` returns a ServiceProxy with its own connection;
    ``connect("lab://HOST:PORT")`` returns a Daemon (``daemon["laser"]``, ``.services()``).
    `timeout`: seconds to wait for each reply (None: as long as it takes); `client_name`:
    how lock reports name this client (default ``user@host``); `secret`: the shared secret
    (str or bytes) of a daemon whose host.json has ``auth`` (default: $LABHOST_SECRET, else
    the first line of the file named by $LABHOST_SECRET_FILE). TLS, for a daemon whose
    host.json has ``tls``: `tls_ca`: the CA file that signed the daemon's certificate
    (default: $LABHOST_TLS_CA; TLS is used iff a CA file is known); `tls_cert`, `tls_key`:
    this client's certificate and key for a daemon that verifies clients (default:
    $LABHOST_TLS_CERT, $LABHOST_TLS_KEY); `ssl_context`: an ssl.SSLContext instead of those.
    Other options go to Connection: connect_timeout (5 s), heartbeats (True), reconnect
    (True), max_payload, busy_poll_us (50). Both are context managers; closing says goodbye
    and releases the session's locks.
    """
    a = parse_address(address)
    connection = Connection(a.host, a.port, timeout=timeout, client_name=client_name,
                            secret=secret, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                            ssl_context=ssl_context, **options)
    try:
        if a.service:
            return ServiceProxy(connection, a.service, owns_connection=True)
        return Daemon(connection, owns_connection=True)
    except BaseException:
        connection.close()
        raise
