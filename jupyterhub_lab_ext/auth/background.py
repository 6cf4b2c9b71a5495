"""Work the authenticator does off the request path, on the hub's event loop.

:class:`BackgroundTasks` runs coroutines as tracked tasks (removal actions, access passes) whose
failures are logged, never raised into a request, and runs one periodic callback (the userlist
pass) once a loop is running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine

from tornado.ioloop import PeriodicCallback


class BackgroundTasks:
    """Tracked tasks and one periodic pass; ``log`` gets the failures."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter):
        self.log = log
        self._tasks: set[asyncio.Task] = set()
        self._poller: PeriodicCallback | None = None

    def spawn(self, coro: Coroutine) -> asyncio.Task | None:
        """Run ``coro`` as a tracked task (or drop it with a log line if no loop runs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.log.warning("no running event loop: background action skipped")
            coro.close()
            return None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("userlist background action failed", exc_info=task.exception())

    async def wait(self) -> None:
        """Wait for pending tasks, including those they start (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def polling(self) -> bool:
        """True once the periodic pass runs."""
        return self._poller is not None

    def start_polling(self, callback: Callable[[], Awaitable], interval: float) -> None:
        """Call ``callback`` every ``interval`` seconds (with 10% jitter).

        Idempotent; does nothing when ``interval`` is 0 or no event loop runs yet (the hub
        builds the authenticator before its loop starts: call again from a coroutine).
        """
        if self._poller is not None or interval <= 0:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._poller = PeriodicCallback(callback, interval * 1000, jitter=0.1)
        self._poller.start()

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
