"""Lock reports: who holds a service's lock (answers of lock and lock_status)."""

import datetime
from dataclasses import dataclass

from .errors import BadMessageError

__all__ = ["LockStatus", "lock_statuses", "lock_wait_ms"]



@dataclass(frozen=True)
class LockStatus:
    """One service's lock.

    ``locked``: held by some session; ``yours``: held by this connection's session;
    ``holder_name``/``holder_pid``/``holder_address``: the holder's client name, process id
    and address; ``since``: Unix time (seconds) the lock was taken; ``lease_left_ms``: how
    long until the holder's session ends if it shows no sign of life.
    """

    service: str
    locked: bool = False
    yours: bool = False
    holder_name: str = ""
    holder_pid: int = 0
    holder_address: str = ""
    since: float = 0.0
    lease_left_ms: int = 0

    def __bool__(self):
        return self.locked

    def __str__(self):
        if not self.locked:
            return "%s: free" % self.service
        when = datetime.datetime.fromtimestamp(self.since, datetime.timezone.utc)
        return "%s: locked by %s%s (pid %d, %s) since %s" % (
            self.service, self.holder_name, " (you)" if self.yours else "", self.holder_pid,
            self.holder_address, when.strftime("%Y-%m-%d %H:%M:%S UTC"))

    @classmethod
    def from_report(cls, report):
        """From the map a daemon sends (core/protocol/messages.cpp, lock_report)."""
        if not isinstance(report, dict) or not isinstance(report.get("service"), str) \
                or not isinstance(report.get("locked"), bool):
            raise BadMessageError("lock_report: expected a map with service and locked")
        if not report["locked"]:
            return cls(report["service"])
        holder = report.get("holder")
        if not isinstance(holder, dict) or not isinstance(holder.get("client_name"), str):
            raise BadMessageError("lock_report.holder: expected a map with client_name")
        since = report.get("since", 0.0)
        return cls(
            service=report["service"],
            locked=True,
            yours=bool(report.get("yours", False)),
            holder_name=holder["client_name"],
            holder_pid=int(holder.get("pid", 0)),
            holder_address=str(holder.get("address", "")),
            since=float(since) if isinstance(since, (int, float)) else 0.0,
            lease_left_ms=int(report.get("lease_left_ms", 0)),
        )


def lock_wait_ms(wait):
    """lock's wait_ms for a wait of `wait` seconds (negative: none)."""
    return max(0, int(round(wait * 1000)))


def lock_statuses(reports, service):
    """lock_status's answer: one LockStatus when `service` was named (rule 7: exactly one
    report), else a list of them, one per service."""
    if not isinstance(reports, list):
        raise BadMessageError("lock_status: expected a list")
    statuses = [LockStatus.from_report(r) for r in reports]
    if service:
        if len(statuses) != 1:
            raise BadMessageError("lock_status: expected one report")
        return statuses[0]
    return statuses
