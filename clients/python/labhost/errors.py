"""Typed errors: one exception class per error code of labhost's protocol.

Every error a daemon sends carries a stable numeric code, a stable snake_case name and a human
message (core/include/labhost/errors.h). Each code has its own class here, all under
LabhostError, so callers catch exactly what they mean::

    try:
        laser.set_wavelength(1700)
    except labhost.DriverError as e:
        print(e.code, e.name, e.message)

Match on the class (or on ``code``/``name``), never on the message text.
"""

__all__ = [
    "LabhostError",
    "BadFrameError",
    "UnsupportedVersionError",
    "NoSuchServiceError",
    "NoSuchMethodError",
    "BadArgumentsError",
    "DriverError",
    "ServiceUnavailableError",
    "BusyError",
    "LabhostTimeoutError",
    "ShuttingDownError",
    "InternalError",
    "BadMessageError",
    "LockedError",
    "NotLockOwnerError",
    "NotLockableError",
    "LockedOutError",
    "NoSuchSessionError",
    "NoSuchTopicError",
    "NoSuchSubscriptionError",
    "AuthFailedError",
    "NotAuthorisedError",
    "TlsRequiredError",
    "NameTakenError",
    "NoSuchNameError",
    "ConnectionLostError",
    "BadAddressError",
    "error_class",
    "make_error",
]


class LabhostError(Exception):
    """Base class of every labhost error.

    Attributes: ``code`` (int, stable), ``name`` (str, stable, e.g. ``"locked"``) and
    ``message`` (str, for humans). ``str(e)`` is ``"name: message"``.
    """

    code = 0
    name = "unknown_error"

    def __init__(self, message="", code=None, name=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name

    def __str__(self):
        return "%s: %s" % (self.name, self.message)

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.message)

    def __reduce__(self):
        return (make_error, (self.code, self.message, self.name))


def _error(class_name, code, name, doc, bases=(LabhostError,)):
    cls = type(class_name, bases, {"code": code, "name": name, "__doc__": doc, "__module__": __name__})
    return cls


# protocol and dispatch
BadFrameError = _error("BadFrameError", 1, "bad_frame",
                       "A frame header or payload was malformed, or a frame was too large.")
UnsupportedVersionError = _error("UnsupportedVersionError", 2, "unsupported_version",
                                 "Client and daemon have no protocol version in common.")
NoSuchServiceError = _error("NoSuchServiceError", 3, "no_such_service",
                            "The daemon has no service of that name.")
NoSuchMethodError = _error("NoSuchMethodError", 4, "no_such_method",
                           "The service has no method of that name.")
BadArgumentsError = _error("BadArgumentsError", 5, "bad_arguments",
                           "Wrong argument count, unknown keyword, or a type that does not fit.")
DriverError = _error("DriverError", 6, "driver_error", "The driver reported a failure.")
ServiceUnavailableError = _error("ServiceUnavailableError", 7, "service_unavailable",
                                 "The driver did not load or the instrument did not open.")
BusyError = _error("BusyError", 8, "busy", "The daemon has too many connections or requests.")
LabhostTimeoutError = _error("LabhostTimeoutError", 9, "timeout",
                             "No reply in time (also a builtin TimeoutError).",
                             (LabhostError, TimeoutError))
ShuttingDownError = _error("ShuttingDownError", 10, "shutting_down", "The daemon is stopping.")
InternalError = _error("InternalError", 11, "internal_error", "A fault inside the daemon.")
BadMessageError = _error("BadMessageError", 12, "bad_message",
                         "A well-formed frame whose message is not what its type requires.")
# sessions and locks
LockedError = _error("LockedError", 20, "locked",
                     "The service is locked by another session (the message names the holder).")
NotLockOwnerError = _error("NotLockOwnerError", 21, "not_lock_owner",
                           "Unlock of a lock this session does not hold.")
NotLockableError = _error("NotLockableError", 22, "not_lockable",
                          "The daemon is shared: its services cannot be locked.")
LockedOutError = _error("LockedOutError", 23, "locked_out",
                        "This session's lock was released by an administrator (force unlock).")
NoSuchSessionError = _error("NoSuchSessionError", 24, "no_such_session", "No such session.")
# events (protocol version 2)
NoSuchTopicError = _error("NoSuchTopicError", 25, "no_such_topic",
                          "The service publishes no topic of that name (the message names its topics).")
NoSuchSubscriptionError = _error("NoSuchSubscriptionError", 26, "no_such_subscription",
                                 "The session has no subscription of that id.")
# security
AuthFailedError = _error("AuthFailedError", 30, "auth_failed", "Authentication failed.")
NotAuthorisedError = _error("NotAuthorisedError", 31, "not_authorised",
                            "Not allowed (e.g. a force unlock with a wrong admin secret).")
TlsRequiredError = _error("TlsRequiredError", 32, "tls_required",
                          "The daemon serves TLS only: connect with a CA file (tls_ca, $LABHOST_TLS_CA).")
# nameserver
NameTakenError = _error("NameTakenError", 40, "name_taken", "The name is registered already.")
NoSuchNameError = _error("NoSuchNameError", 41, "no_such_name", "No such name on the nameserver.")
# raised by clients, never sent by a daemon
ConnectionLostError = _error("ConnectionLostError", 100, "connection_lost",
                             "The connection to the daemon broke or could not be made "
                             "(also a builtin ConnectionError).",
                             (LabhostError, ConnectionError))
BadAddressError = _error("BadAddressError", 101, "bad_address",
                         "An address that does not parse (expected lab://HOST:PORT/SERVICE).",
                         (LabhostError, ValueError))

_BY_CODE = {
    cls.code: cls
    for cls in (
        BadFrameError, UnsupportedVersionError, NoSuchServiceError, NoSuchMethodError,
        BadArgumentsError, DriverError, ServiceUnavailableError, BusyError, LabhostTimeoutError,
        ShuttingDownError, InternalError, BadMessageError, LockedError, NotLockOwnerError,
        NotLockableError, LockedOutError, NoSuchSessionError, NoSuchTopicError,
        NoSuchSubscriptionError, AuthFailedError,
        NotAuthorisedError, TlsRequiredError, NameTakenError, NoSuchNameError,
        ConnectionLostError,
        BadAddressError,
    )
}


def error_class(code):
    """The exception class of a numeric error code (LabhostError for an unknown code)."""
    return _BY_CODE.get(code, LabhostError)


def make_error(code, message, name=None):
    """An exception instance for a typed error received from a daemon."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    return LabhostError(message, code=code, name=name or "unknown_error")
