"""How many stops and user deletions a pass has in flight: fixed, or kept to a hub-latency budget.

:class:`Throttle` owns a :class:`Gate` (a semaphore whose size can change, with a spacing
between starts) that every stop and user deletion of a pass goes through. With a budget, it times
the hub's answers while the pass runs (:class:`LatencyProbe`, its own Hub API client, so it never
waits behind our own stops), feeds them to the pure :class:`~.aimd.AIMD` controller, resizes the
gate and spaces its starts by the stops' own recent duration over the limit
(:func:`~.aimd.start_spacing`), so that the stops in flight do not start and finish as a burst.
Without a budget, the gate stays at ``--concurrency`` with no spacing, as before the budget existed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import statistics
import time
from collections.abc import AsyncIterator

from jupyterhub_lab_ext.services.common.hubapi import HubAPI, HubAPIError
from jupyterhub_lab_ext.services.culler.aimd import AIMD, idle_median, percentile, start_spacing
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".engine")

#: probes per pass at most (a pass of 24 h at the default interval); the loop also ends with it
MAX_PROBES = 432_000
#: samples kept per pass for its report
MAX_SAMPLES = 100_000


def _median(values) -> float | None:
    return statistics.median(values) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 2)


class ProbeUnusable(Exception):
    """The hub refuses the probe (no scope, no such endpoint): latency cannot be measured."""


class Gate:
    """At most ``limit`` holders at once, their starts at least ``spacing`` seconds apart.

    :meth:`resize` and :meth:`space` take effect for the next acquire. The spacing spreads the
    holders' starts (and so the hub's work for them) evenly instead of letting a whole limit's
    worth start, and complete, at once. ``durations`` keeps how long the last holders held.
    ``clock``/``sleep``: the event loop's, replaceable in tests.
    """

    def __init__(self, limit: int, *, clock=None, sleep=asyncio.sleep, keep: int = 20):
        self.limit = max(1, limit)
        self.spacing = 0.0
        self.in_flight = 0
        self.peak = 0
        self.durations: collections.deque[float] = collections.deque(maxlen=keep)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._sleep = sleep
        self._next_start = 0.0
        self._full_seen = False
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._cond:
            if self.in_flight >= self.limit:
                self._full_seen = True
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.limit:
                self._full_seen = True
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self.spacing
        try:
            if start > now:
                await self._sleep(start - now)
            started = self._clock()
            yield
            self.durations.append(self._clock() - started)
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify()

    async def resize(self, limit: int) -> None:
        async with self._cond:
            self.limit = max(1, limit)
            self._cond.notify_all()

    def space(self, spacing: float) -> None:
        """Seconds between starts from the next one on (0: none, and no start waits)."""
        self.spacing = max(0.0, spacing)
        if not self.spacing:
            self._next_start = 0.0

    def take_full(self) -> bool:
        """Whether the limit was reached since the last call (then forgotten)."""
        full, self._full_seen = self._full_seen or self.in_flight >= self.limit, False
        return full


class LatencyProbe:
    """Times the hub's cheapest API request: ``GET /`` (the hub's version; no listing, no models).

    What a pass adds to everyone's answer times is the wait for the hub's event loop, the same
    for every request; a costlier probe (``GET /users?limit=1`` costs the hub about ten times as
    much) would add to the load it measures, five times a second. ``hub`` should be a client of
    its own (one request in flight, no retries): a probe that queued behind our own stops in a
    shared client would measure us, not the hub.
    """

    path = "/"
    params: dict = {}

    def __init__(self, hub: HubAPI):
        self.hub = hub

    async def sample(self) -> float:
        """Seconds until the hub answered (a failed answer counts with its time)."""
        started = time.perf_counter()
        try:
            await self.hub.request("GET", self.path, params=self.params, ok=(200,), retries=0)
        except HubAPIError as e:
            if e.status in (401, 403, 404):
                raise ProbeUnusable(str(e)) from None
        return time.perf_counter() - started


class Throttle:
    """The stops-in-flight limit of each pass (long-lived; passes never overlap).

    :param ceiling: the limit without a budget, and its upper bound with one (``--concurrency``).
    :param budget: seconds of added median hub latency allowed; 0: a fixed limit.
    :param probe: times the hub's answers (required with a budget).
    :param interval: seconds between probe requests while a pass runs.
    :param idle_samples: probes before the pass for the idle median.
    :param window: probes per decision of the controller.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        budget: float = 0.0,
        probe: LatencyProbe | None = None,
        metrics: CullerMetrics | None = None,
        interval: float = 0.2,
        idle_samples: int = 5,
        window: int = 3,
    ):
        if budget > 0 and probe is None:
            raise ValueError("a latency budget needs a probe")
        self.ceiling = max(1, ceiling)
        self.budget = budget
        self.probe = probe
        self.metrics = metrics
        self.interval = interval
        self.idle_samples = idle_samples
        self.window = window
        self.gate = Gate(self.ceiling)
        self.controller: AIMD | None = None
        self._task: asyncio.Task | None = None
        self._samples: list[float] = []
        self._limits: tuple[int, int, int] = (self.ceiling,) * 3  # min, max, last of a pass
        self._unusable_logged = False
        self._measured = False
        self._spacing_max = 0.0
        if metrics is not None:
            metrics.concurrency.set(self.ceiling)

    @property
    def adaptive(self) -> bool:
        return self.budget > 0

    def slot(self):
        """``async with throttle.slot():`` around each stop and user deletion."""
        return self.gate.slot()

    async def begin(self, measure: bool = True) -> None:
        """Before a pass: measure the idle hub, start low, and watch the hub while it runs.

        ``measure`` False (a dry run, which stops nothing): no probes, the fixed limit.
        """
        self._samples, self.controller, self._measured = [], None, measure and self.adaptive
        self.gate.space(0.0)
        self._spacing_max = 0.0
        if not self._measured:
            await self._resize(self.ceiling, first=True)
            return
        try:
            await self._idle_sample()  # a warm-up: the first request of a client costs more
            idle = idle_median([await self._idle_sample() for _ in range(self.idle_samples)])
        except ProbeUnusable as e:
            self._blind(e)
            await self._resize(self.ceiling, first=True)
            return
        self.controller = AIMD(self.budget, self.ceiling, idle=idle, window=self.window)
        await self._resize(self.controller.limit, first=True)
        self._set_latency(None, idle)
        self._task = asyncio.ensure_future(self._watch())

    async def end(self) -> dict | None:
        """After a pass: stop watching; what the pass saw (None without a budget)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.gate.space(0.0)
        if not self._measured:
            return None
        lo, hi, last = self._limits
        return {
            "budget_ms": _ms(self.budget),
            "idle_ms": _ms(self.controller.idle if self.controller else None),
            "p50_ms": _ms(percentile(self._samples, 50)),
            "p99_ms": _ms(percentile(self._samples, 99)),
            "samples": len(self._samples),
            "concurrency_min": lo,
            "concurrency_max": hi,
            "concurrency_last": last,
            "spacing_max_ms": _ms(self._spacing_max),
        }

    async def _idle_sample(self) -> float:
        sample = await self.probe.sample()
        await asyncio.sleep(self.interval / 4)
        return sample

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        ctl = self.controller
        for _ in range(MAX_PROBES):
            started = loop.time()
            try:
                sample = await self.probe.sample()
            except ProbeUnusable as e:
                self._blind(e)
                await self._resize(self.ceiling)
                return
            limit = ctl.observe(sample, used=self.gate.take_full())
            if limit != self.gate.limit:
                log.debug(
                    "Hub latency %.1f ms (idle %.1f ms): %d stops in flight",
                    1000 * ctl.last_median,
                    1000 * ctl.idle,
                    limit,
                )
            await self._resize(limit)
            self.gate.space(start_spacing(limit, _median(self.gate.durations)))
            self._spacing_max = max(self._spacing_max, self.gate.spacing)
            if len(self._samples) < MAX_SAMPLES:
                self._samples.append(sample)
            self._set_latency(ctl.last_median, ctl.idle)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    async def _resize(self, limit: int, first: bool = False) -> None:
        if first or limit != self.gate.limit:
            await self.gate.resize(limit)
            if self.metrics is not None:
                self.metrics.concurrency.set(limit)
        lo, hi, _ = self._limits
        self._limits = (limit, limit, limit) if first else (min(lo, limit), max(hi, limit), limit)

    def _blind(self, error: Exception) -> None:
        if not self._unusable_logged:
            log.warning(
                "Cannot time the hub (%s): keeping --concurrency=%d stops in flight",
                error,
                self.ceiling,
            )
            self._unusable_logged = True

    def _set_latency(self, latency: float | None, idle: float | None) -> None:
        if self.metrics is None:
            return
        if latency is not None:
            self.metrics.hub_latency.set(latency)
        if idle is not None:
            self.metrics.hub_idle_latency.set(idle)
