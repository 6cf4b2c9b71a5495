"""What environment discovery left out, and why: records, and one log line for each.

Discovery (:mod:`jupyterhub_lab_ext.kernels.conda_envs`) returns a :class:`Skip` for every directory it
saw but did not offer. The spawner writes them to the hub's log and the kernelspec manager to the
single-user server's log, through their own loggers, with :class:`SkipLog`: one line per skip,
written when it first appears and again only after it went away and came back (listings repeat on
every spawn form and every kernel list, the log lines should not).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

NO_KERNEL = "no-kernel"
NOT_AN_ENV = "not-an-env"
BAD_KERNELSPEC = "bad-kernelspec"
NOT_OWNED = "not-owned"
OUTSIDE = "outside"
UNSAFE_SHARED = "unsafe-shared"

#: skips that point at a mistake or an attempt, not at an unfinished env: logged as warnings
WARNING_KINDS = frozenset({NOT_OWNED, OUTSIDE, UNSAFE_SHARED})


@dataclass(frozen=True, order=True)
class Skip:
    """A directory that discovery did not offer."""

    path: str
    reason: str  #: for people: ``/srv/envs is writable by others (mode 1777)``
    kind: str  #: one of the constants above

    @property
    def level(self) -> int:
        return logging.WARNING if self.kind in WARNING_KINDS else logging.INFO


class SkipLog:
    """Logs each skip once while it lasts (one instance per user: a spawner, a server)."""

    def __init__(self) -> None:
        self._logged: frozenset[Skip] = frozenset()

    def report(self, log: logging.Logger | logging.LoggerAdapter, user: str, skips: Iterable[Skip]):
        current = frozenset(skips)
        for skip in sorted(current - self._logged):
            log.log(skip.level, "user=%s skipped %s: %s", user, skip.path, skip.reason)
        self._logged = current
