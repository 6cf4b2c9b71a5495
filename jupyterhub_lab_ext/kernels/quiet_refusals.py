"""Refusals of what a user asked for: one warning line each, never an error with a traceback.

A user can send refused requests as fast as they like, so each must cost the log one line. But
JupyterHub and jupyter_client log some of them several times at error level, with tracebacks:

- a spawn that ``apply_user_options`` refuses with HTTP 400: ``Exception applying user_options``
  (spawner), ``Error starting NAME's server`` (user), and for the spawn form ``Error starting
  server NAME`` and ``Failed to spawn single-user server with form`` (``... with query arguments``
  for ``/hub/spawn?profile=...``);
- in the single-user server, a kernel that the kernelspec manager refuses: jupyter_client's
  kernel manager and multi-kernel manager each log the exception with a traceback.

So whoever refuses logs one warning itself and raises a :class:`Refusal` through :func:`quiet`,
which puts a :class:`QuietRefusals` filter on the handlers of its log (the handlers, because part
of these records come from other loggers, e.g. tornado's, that reach the same handlers by
propagation). The filter drops error records that carry a refusal or quote a recent one; every
other record, and every other error, passes unchanged.
"""

from __future__ import annotations

import logging
from collections import deque

from tornado import web

#: how many recent refusals the filter recognises in one-line error records that quote them
RECENT_REFUSALS = 256


class Refusal(Exception):
    """Marks an exception as an expected refusal of a user's request (see the module doc)."""


class EnvNotOffered(web.HTTPError, Refusal):
    """HTTP 400 for an environment that is not on the user's list.

    The text reaches the user through ``jupyterhub_message`` (the REST reply's ``message`` and the
    error shown above the spawn form). There is no tornado ``log_message``, so tornado logs no
    line of its own for it.
    """

    def __init__(self, message: str):
        super().__init__(400)
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return f"HTTP 400: Bad Request ({self.jupyterhub_message})"


class QuietRefusals(logging.Filter):
    """Drops error records about a :class:`Refusal` (see the module doc)."""

    def __init__(self) -> None:
        super().__init__("jupyterhub_lab_ext.kernels.quiet_refusals")
        self._recent: deque[str] = deque(maxlen=RECENT_REFUSALS)

    def remember(self, refusal: Refusal) -> None:
        self._recent.append(str(refusal))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.exc_info and isinstance(record.exc_info[1], Refusal):
            return False
        if not self._recent:
            return True
        message = record.getMessage()
        return not any(text in message for text in self._recent)


_filter = QuietRefusals()


def _handlers(logger: logging.Logger | None) -> list[logging.Handler]:
    """The handlers a record of ``logger`` reaches (its own, then its parents' while propagating)."""
    found: list[logging.Handler] = []
    while logger is not None:
        found.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    return found


def quiet(log: logging.Logger | logging.LoggerAdapter, refusal: Refusal) -> Refusal:
    """``refusal``, to raise, with the handlers of ``log`` made quiet about it."""
    logger = log.logger if isinstance(log, logging.LoggerAdapter) else log
    for handler in _handlers(logger):
        if _filter not in handler.filters:
            handler.addFilter(_filter)
    _filter.remember(refusal)
    return refusal
