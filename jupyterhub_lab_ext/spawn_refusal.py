"""A spawn refused for an environment the user is not offered: one warning line in the hub log.

When ``apply_user_options`` refuses a spawn with an HTTP 400, JupyterHub itself logs it up to four
times at error level, twice with a full traceback: ``Exception applying user_options`` (spawner),
``Error starting NAME's server`` (user), and for the spawn form ``Error starting server NAME`` and
``Failed to spawn single-user server with form`` (``... with query arguments`` for
``/hub/spawn?profile=...``). Any user can send such requests as fast as they like. So the spawner
logs one warning itself and raises :class:`EnvNotOffered` through :func:`refuse`, which puts a
:class:`QuietRefusals` filter on the hub's logger: it drops JupyterHub's error records that carry
that exception or quote it. Every other record, and every other error, passes unchanged.
"""

from __future__ import annotations

import logging
from collections import deque

from tornado import web

#: how many recent refusals the filter recognises in JupyterHub's one-line error records
RECENT_REFUSALS = 256


class EnvNotOffered(web.HTTPError):
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
    """Drops JupyterHub's error records about an :class:`EnvNotOffered` (see the module doc)."""

    def __init__(self) -> None:
        super().__init__("jupyterhub_lab_ext.spawn_refusal")
        self._recent: deque[str] = deque(maxlen=RECENT_REFUSALS)

    def remember(self, refusal: EnvNotOffered) -> None:
        self._recent.append(str(refusal))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.exc_info and isinstance(record.exc_info[1], EnvNotOffered):
            return False
        if not self._recent:
            return True
        message = record.getMessage()
        return not any(text in message for text in self._recent)


_filter = QuietRefusals()


def refuse(log: logging.Logger | logging.LoggerAdapter, message: str) -> EnvNotOffered:
    """The exception to raise for a refused env, with the hub's logger made quiet about it."""
    logger = log.logger if isinstance(log, logging.LoggerAdapter) else log
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    refusal = EnvNotOffered(message)
    _filter.remember(refusal)
    return refusal
