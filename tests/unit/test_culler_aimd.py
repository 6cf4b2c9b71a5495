"""The adaptive-concurrency controller: latency samples in, a stops-in-flight limit out (pure)."""

import pytest

from jupyterhub_lab_ext.services.culler.aimd import AIMD, idle_median, percentile, start_spacing

MS = 0.001


def feed(ctl, samples, used=True):
    return [ctl.observe(s, used=used) for s in samples]


def test_adds_one_per_window_up_to_the_ceiling_while_within_budget():
    ctl = AIMD(25 * MS, 4, idle=5 * MS, window=1)
    assert ctl.limit == 1
    assert feed(ctl, [10 * MS] * 5) == [2, 3, 4, 4, 4]


def test_over_budget_halves():
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=1)
    feed(ctl, [10 * MS] * 7)  # 8
    assert ctl.observe(40 * MS) == 4  # 35 ms added > 25: halve
    assert feed(ctl, [10 * MS] * 3) == [5, 6, 7]
    assert ctl.observe(31 * MS) == 3  # int(7 * 0.5)
    assert ctl.observe(29 * MS) == 4  # 24 ms added: within the budget


@pytest.mark.parametrize(
    "samples, limit",
    [
        ([100 * MS] * 5, 1),  # never below the floor
        ([10 * MS, 10 * MS, 40 * MS], 2),  # one slow sample out of three: the median is fine
        ([40 * MS, 40 * MS, 10 * MS], 1),  # two of three slow: over budget
    ],
    ids=["floor", "one-outlier-ignored", "median-over-budget"],
)
def test_the_window_median_decides(samples, limit):
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=3)
    feed(ctl, samples)
    assert ctl.limit == limit


def test_one_spike_halves_at_once_and_starts_a_new_window():
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=3, spike=2)
    feed(ctl, [10 * MS] * 21)  # seven windows: 8
    assert ctl.limit == 8
    assert feed(ctl, [10 * MS, 10 * MS]) == [8, 8]  # a window under way
    assert ctl.observe(56 * MS) == 4  # 51 ms added > 2 x 25: halve now, no waiting
    assert feed(ctl, [10 * MS, 10 * MS]) == [4, 4]  # the window started anew
    assert ctl.observe(10 * MS) == 5
    assert ctl.observe(54 * MS) == 5  # 49 ms added: not a spike, just a sample


def test_without_the_spike_rule_only_the_median_counts():
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=3, spike=0)
    feed(ctl, [10 * MS] * 9)  # 4
    assert feed(ctl, [10 * MS, 10 * MS, 900 * MS]) == [4, 4, 5]


def test_no_decision_before_a_full_window():
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=3)
    assert feed(ctl, [20 * MS, 20 * MS]) == [1, 1]
    assert ctl.last_median is None and ctl.added is None
    assert ctl.observe(20 * MS) == 2 and ctl.last_median == 20 * MS
    assert ctl.added == pytest.approx(15 * MS)


def test_an_unused_limit_is_not_raised():
    """A listing with nothing to stop must not grow the limit into a burst of stops later."""
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=1)
    assert feed(ctl, [6 * MS] * 5, used=False) == [1] * 5
    assert feed(ctl, [6 * MS] * 2, used=True) == [2, 3]


def test_used_once_in_a_window_counts():
    ctl = AIMD(25 * MS, 10, idle=5 * MS, window=3)
    ctl.observe(6 * MS, used=True)
    ctl.observe(6 * MS, used=False)
    assert ctl.observe(6 * MS, used=False) == 2


def test_without_an_idle_median_the_first_window_is_taken():
    ctl = AIMD(25 * MS, 10, window=2)
    assert feed(ctl, [40 * MS, 40 * MS]) == [1, 1]  # no idle median yet: no spikes either
    assert ctl.idle == 40 * MS
    assert feed(ctl, [60 * MS, 60 * MS]) == [1, 2]


@pytest.mark.parametrize(
    "kw",
    [
        {"budget": 0, "ceiling": 10},
        {"budget": 0.01, "ceiling": 0},
        {"budget": 0.01, "ceiling": 5, "floor": 6},
        {"budget": 0.01, "ceiling": 5, "window": 0},
        {"budget": 0.01, "ceiling": 5, "decrease": 1.0},
        {"budget": 0.01, "ceiling": 5, "spike": -1},
    ],
    ids=[
        "no-budget",
        "no-ceiling",
        "floor-above-ceiling",
        "empty-window",
        "no-decrease",
        "negative-spike",
    ],
)
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        AIMD(**kw)


def test_helpers():
    assert idle_median([]) is None
    assert idle_median([3.0, 1.0, 2.0]) == 2.0
    assert percentile([], 50) is None
    assert percentile(list(range(101)), 99) == 99
    assert percentile([5.0], 99) == 5.0


@pytest.mark.parametrize(
    "limit, stop_seconds, spacing",
    [(4, 80 * MS, 20 * MS), (1, 80 * MS, 80 * MS), (4, None, 0.0), (4, 0.0, 0.0)],
    ids=["spread-over-a-stop", "one-at-a-time", "unknown", "zero"],
)
def test_stops_start_a_stop_time_over_the_limit_apart(limit, stop_seconds, spacing):
    assert start_spacing(limit, stop_seconds) == pytest.approx(spacing)
