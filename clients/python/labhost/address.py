"""labhost addresses: ``lab://HOST:PORT/SERVICE`` (a service) or ``lab://HOST:PORT`` (a daemon).

The ``lab://`` prefix is optional; IPv6 hosts go in brackets (``lab://[::1]:7701/laser``).
Same rules as the C++ client's service_address::parse.
"""

from collections import namedtuple

from .errors import BadAddressError

__all__ = ["Address", "parse_address"]


class Address(namedtuple("Address", "host port service")):
    """host (str), port (int), service (str, empty when the address names a daemon)."""

    __slots__ = ()

    def __str__(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "lab://%s:%d%s" % (host, self.port, "/" + self.service if self.service else "")

    def daemon(self):
        """The address of the daemon serving this service."""
        return self._replace(service="")

    def with_service(self, service):
        return self._replace(service=service)


def parse_address(text):
    """An Address from text; raises BadAddressError saying what was expected."""
    if isinstance(text, Address):
        return text
    if not isinstance(text, str):
        raise BadAddressError("%r: expected a string lab://HOST:PORT/SERVICE" % (text,))
    rest = text[6:] if text.startswith("lab://") else text
    service = ""
    hostport = rest
    if "/" in rest:
        hostport, service = rest.split("/", 1)
        if not service or "/" in service:
            raise BadAddressError('"%s": expected lab://HOST:PORT/SERVICE' % text)
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 >= len(hostport) or hostport[close + 1] != ":":
            raise BadAddressError('"%s": expected [IPV6]:PORT' % text)
        host = hostport[1:close]
        port = hostport[close + 2:]
    else:
        colon = hostport.rfind(":")
        if colon <= 0:
            raise BadAddressError('"%s": expected lab://HOST:PORT/SERVICE' % text)
        host = hostport[:colon]
        port = hostport[colon + 1:]
        # "::1:7701" could end its address anywhere: IPv6 hosts go in brackets.
        if ":" in host:
            raise BadAddressError('"%s": write an IPv6 host in brackets, [ADDRESS]:PORT' % text)
    if not host:
        raise BadAddressError('"%s": no host' % text)
    if not port or len(port) > 5 or not port.isdigit() or not port.isascii() or not 0 < int(port) <= 65535:
        raise BadAddressError('"%s": port must be 1 to 65535' % text)
    return Address(host, int(port), service)
