"""How many stops the culler keeps in flight: additive increase, multiplicative decrease.

Pure: :class:`AIMD` is fed the hub's answer times (seconds, one probe request each) and answers
with a concurrency limit. The I/O (timing the probes, enforcing the limit) is in :mod:`.throttle`.

The rule, against the hub's idle median:

- once per ``window`` samples, the window's median more than ``budget`` above: halve the limit
  (``decrease``), never below ``floor``; within the budget, and the limit was used (stops were
  waiting for a place): raise it by ``increase``, never above ``ceiling``;
- a single sample more than ``spike`` budgets above: halve at once and start a new window. The
  median hides the tail: with many stops in flight the median can stay within the budget while
  some answers take several times as long.

A limit that was not used is not raised: otherwise a listing with nothing to stop would grow it
to the ceiling and the first stops would arrive as a burst.
"""

from __future__ import annotations

from collections.abc import Iterable
from statistics import median


class AIMD:
    """The controller: ``observe()`` each latency sample, read ``limit``.

    :param budget: seconds the median answer time may exceed the idle median (> 0).
    :param ceiling: the highest limit (``--concurrency``).
    :param idle: the hub's idle median in seconds; None: the first window's median is taken.
    :param spike: a sample this many budgets above the idle median halves at once (0: never).
    """

    def __init__(
        self,
        budget: float,
        ceiling: int,
        *,
        idle: float | None = None,
        floor: int = 1,
        window: int = 3,
        increase: int = 1,
        decrease: float = 0.5,
        spike: float = 2.0,
    ):
        if budget <= 0:
            raise ValueError("budget must be > 0")
        if not 1 <= floor <= ceiling:
            raise ValueError("need 1 <= floor <= ceiling")
        if window < 1 or increase < 1 or not 0 < decrease < 1 or spike < 0:
            raise ValueError("need window >= 1, increase >= 1, 0 < decrease < 1, spike >= 0")
        self.budget = budget
        self.ceiling = ceiling
        self.floor = floor
        self.window = window
        self.increase = increase
        self.decrease = decrease
        self.spike = spike
        self.idle = idle
        self.limit = floor
        #: median of the last complete window (None before the first)
        self.last_median: float | None = None
        self._samples: list[float] = []
        self._used = False

    @property
    def added(self) -> float | None:
        """Seconds the last window's median was above the idle median."""
        if self.last_median is None or self.idle is None:
            return None
        return self.last_median - self.idle

    def observe(self, sample: float, used: bool = True) -> int:
        """Add one answer time; ``used``: the limit was reached since the last sample."""
        if self.spike and self.idle is not None and sample - self.idle > self.spike * self.budget:
            self._samples, self._used = [], False
            return self._halve()
        self._samples.append(sample)
        self._used = self._used or used
        if len(self._samples) < self.window:
            return self.limit
        self.last_median = median(self._samples)
        used, self._samples, self._used = self._used, [], False
        if self.idle is None:
            self.idle = self.last_median
        elif self.last_median - self.idle > self.budget:
            self._halve()
        elif used:
            self.limit = min(self.ceiling, self.limit + self.increase)
        return self.limit

    def _halve(self) -> int:
        self.limit = max(self.floor, int(self.limit * self.decrease))
        return self.limit


def start_spacing(limit: int, stop_seconds: float | None) -> float:
    """Seconds between the starts of stops so that ``limit`` of them are in flight on average.

    ``stop_seconds``: how long a stop takes the hub (a recent median; None or 0: unknown, no
    spacing). Stops started at once also finish at once, and the hub's work for a whole limit
    of them lands on the answers of everyone else in one burst: started ``stop_seconds / limit``
    apart, the same number in flight overlap as little as they can.
    """
    if not stop_seconds or stop_seconds <= 0:
        return 0.0
    return stop_seconds / max(1, limit)


def idle_median(samples: Iterable[float]) -> float | None:
    """The hub's idle answer time from samples taken before a pass (None: no samples)."""
    values = list(samples)
    return median(values) if values else None


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]
