"""The culler's timer: a pass at start, then one every ``cull_every`` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from jupyterhub_lab_ext.services.culler.engine import Culler, utcnow

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".app")


class PassTimer:
    """Runs ``culler``'s passes every ``every`` seconds, counted from each pass's start
    (a pass longer than that delays the next one: passes never overlap)."""

    def __init__(self, culler: Culler, every: float, *, dry_run: bool = False):
        self.culler = culler
        self.every = every
        self.dry_run = dry_run
        #: when the next timed pass starts (None before the first pass ended)
        self.next_pass_at: datetime | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.culler.run_pass(dry_run=self.dry_run, trigger="timer")
            except Exception:
                log.exception("Culling pass crashed")
            delay = max(0.0, self.every - (loop.time() - started))
            self.next_pass_at = utcnow() + timedelta(seconds=delay)
            await asyncio.sleep(delay)

    async def stop(self, grace: float) -> None:
        """Let a running pass finish (at most ``grace`` seconds), then stop between passes."""
        if self._task is None:
            return
        if self.culler.busy:
            log.info("Waiting for the running pass to finish")
            await self.culler.wait_idle(grace)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
