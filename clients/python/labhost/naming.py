"""Finding services by name: labhost's nameserver (core/naming/name_registry.h).

A nameserver (``labhost ns``, or the one ``labhost up`` starts) serves one built-in service,
"nameserver", with the methods register(name, address, metadata), lookup(name),
list(prefix, metadata) and remove(name). Daemons register each of their services there by
themselves (host.json ``register_with``), under the service's name, with the metadata
"daemon", "driver", "description" and the service's own ``metadata`` from host.json. A name
disappears when the daemon that registered it stops.

    laser = labhost.locate("laser")             # a ServiceProxy, wherever the laser is served
    for record in labhost.names(prefix="cam"):
        print(record.name, record.address, record.metadata["description"])

The nameserver is ``ns`` ("HOST:PORT" or "lab://HOST:PORT"), else $LABHOST_NS, else
"127.0.0.1:7700" (default_nameserver()). The connection options (``secret``, and ``tls_ca``,
``tls_cert``, ``tls_key``, ``ssl_context`` or $LABHOST_TLS_CA... for TLS) serve for the
nameserver and for the service located through it alike.
"""

import os
from dataclasses import dataclass, field

from .address import parse_address
from .connection import Connection
from .errors import BadAddressError, BadMessageError

__all__ = ["NameRecord", "default_nameserver", "names", "lookup", "locate"]

DEFAULT_NAMESERVER = "127.0.0.1:7700"
SERVICE = "nameserver"  # the nameserver's built-in service
NAMESERVER_TIMEOUT = 10.0  # seconds for the nameserver's answer, unless timeout= says otherwise


@dataclass(frozen=True)
class NameRecord:
    """One registered name. ``address``: ``lab://HOST:PORT/SERVICE``; ``metadata``: a dict
    (daemon, driver, description, and the service's own metadata from host.json);
    ``owner``: the client name of the session that registered it (``daemon NAME@HOST``)."""

    name: str
    address: str
    metadata: dict = field(default_factory=dict, compare=True, hash=False)
    owner: str = ""

    @classmethod
    def from_value(cls, value):
        """From the map the nameserver sends (name_entry::to_value)."""
        if not isinstance(value, dict) or not isinstance(value.get("name"), str) \
                or not isinstance(value.get("address"), str) \
                or not value["name"] or not value["address"]:
            raise BadMessageError("nameserver: malformed name record")
        metadata = value.get("metadata")
        owner = value.get("owner")
        return cls(name=value["name"], address=value["address"],
                   metadata=metadata if isinstance(metadata, dict) else {},
                   owner=owner if isinstance(owner, str) else "")

    def connect(self, **connect_options):
        """A ServiceProxy of the named service (labhost.connect of its address)."""
        from . import connect
        return connect(self.address, **connect_options)


def default_nameserver():
    """The nameserver used when none is given: $LABHOST_NS, else "127.0.0.1:7700"."""
    return os.environ.get("LABHOST_NS") or DEFAULT_NAMESERVER


def _nameserver_address(ns):
    where = ns or default_nameserver()
    a = parse_address(where)
    if a.service not in ("", SERVICE):
        raise BadAddressError('"%s": a nameserver is HOST:PORT (or lab://HOST:PORT)' % where)
    return a


def _ask(ns, method, args, connect_options):
    """Calls one nameserver method on a short-lived connection (no heartbeats)."""
    a = _nameserver_address(ns)
    options = dict(connect_options)
    options.setdefault("timeout", NAMESERVER_TIMEOUT)
    options["heartbeats"] = False  # one short question
    options["reconnect"] = False
    with Connection(a.host, a.port, **options) as ns_connection:
        return ns_connection.call(SERVICE, method, args)


def names(ns=None, prefix="", metadata=None, **connect_options):
    """The names registered on the nameserver, as NameRecords in name order: those starting
    with `prefix` whose metadata holds every key and value of `metadata` (values compare by
    type too: 1 is not 1.0). `connect_options` go to the connection to the nameserver
    (timeout, connect_timeout, client_name, secret, tls_ca, tls_cert, tls_key, ssl_context)."""
    if not isinstance(prefix, str):
        raise TypeError("prefix: expected str, got %s" % type(prefix).__name__)
    args = [prefix]
    if metadata:
        if not isinstance(metadata, dict):
            raise TypeError("metadata: expected a dict, got %s" % type(metadata).__name__)
        args.append(metadata)
    found = _ask(ns, "list", args, connect_options)
    if not isinstance(found, list):
        raise BadMessageError("nameserver: list did not return a list")
    return [NameRecord.from_value(v) for v in found]


def lookup(name, ns=None, **connect_options):
    """The NameRecord of `name`. `connect_options` as for names(). Errors: NoSuchNameError."""
    return NameRecord.from_value(_ask(ns, "lookup", [name], connect_options))


def locate(name, ns=None, **connect_options):
    """A ServiceProxy of the service registered as `name` on the nameserver, with its own
    connection. `connect_options` are those of labhost.connect (timeout, client_name,
    secret, tls_ca, tls_cert, tls_key, ssl_context, ...); they serve for the nameserver too.
    Errors: NoSuchNameError."""
    record = lookup(name, ns, **connect_options)
    address = parse_address(record.address)
    if not address.service:
        raise BadMessageError('nameserver: "%s" stands for %s, which names no service'
                              % (name, record.address))
    return record.connect(**connect_options)
