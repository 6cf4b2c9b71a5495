"""Stops in flight against a hub-latency budget: a slow fake hub makes the culler back off, a fast
one lets it go up to --concurrency, no budget keeps --concurrency (fake Hub API, real clock)."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from fakehub import FakeHub
from prometheus_client import generate_latest

from jupyterhub_lab_ext.services.common.hubapi import HubAPI
from jupyterhub_lab_ext.services.common.metrics import make_registry
from jupyterhub_lab_ext.services.culler import policy as P
from jupyterhub_lab_ext.services.culler.app import LabIdleCuller
from jupyterhub_lab_ext.services.culler.engine import Culler
from jupyterhub_lab_ext.services.culler.metrics import CullerMetrics
from jupyterhub_lab_ext.services.culler.throttle import Gate, LatencyProbe, Throttle

NOW = datetime.now(timezone.utc)
CEILING = 10


@pytest.fixture
async def hub():
    h = FakeHub("tok", stop_latency=0.05)
    for i in range(150):
        h.add_user(f"u{i:03d}")
        h.add_server(f"u{i:03d}", started=NOW, last_activity=NOW - timedelta(hours=2))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def run_pass(hub):
    """One pass of a culler with ``budget`` seconds (0: off); returns (report, metrics text)."""
    clients = []

    async def run(budget: float, probe_url: str = ""):
        api = HubAPI(hub.api_url, "tok", concurrency=CEILING, backoff_base=0.001, retries=1)
        probe_api = HubAPI(probe_url or hub.api_url, "tok", concurrency=1, retries=0)
        clients.extend([api, probe_api])
        registry = make_registry()
        metrics = CullerMetrics(registry)
        throttle = Throttle(
            CEILING,
            budget=budget,
            probe=LatencyProbe(probe_api),
            metrics=metrics,
            interval=0.02,
            idle_samples=3,
        )
        culler = Culler(
            api, P.Policy(timeout=600), metrics=metrics, throttle=throttle, concurrency=CEILING
        )
        report = await asyncio.wait_for(culler.run_pass(), 120)
        return report, generate_latest(registry).decode()

    yield run
    for api in clients:
        await api.aclose()


def probes(hub) -> int:
    return sum(1 for method, uri in hub.log if uri == "/hub/api/")


async def test_a_slow_hub_makes_the_culler_back_off(hub, run_pass):
    hub.load_delay = 0.02  # every answer waits 20 ms per stop in flight
    report, metrics = await run_pass(budget=0.025)
    assert report.counts["culled"] == 150 and report.complete
    seen = report.hub_latency
    # a warm-up and three probes for the idle median, one per sample, perhaps one cut short
    assert seen["samples"] > 0 and 0 <= probes(hub) - (seen["samples"] + 4) <= 1
    # two stops in flight would add 40 ms: over the 25 ms budget, so it stays well below 10
    assert seen["concurrency_max"] < CEILING
    assert hub.peak_deletes_in_flight <= seen["concurrency_max"]
    # the stops are spread out: started a stop's duration (>= the hub's 50 ms) over the limit apart
    assert seen["spacing_max_ms"] >= 50 / seen["concurrency_max"]
    assert "jhle_culler_concurrency " in metrics
    assert "jhle_culler_hub_latency_seconds " in metrics
    assert "jhle_culler_hub_idle_latency_seconds " in metrics


async def test_a_fast_hub_lets_the_culler_go_up_to_the_bound(hub, run_pass):
    report, metrics = await run_pass(budget=0.2)
    assert report.counts["culled"] == 150
    assert report.hub_latency["concurrency_min"] == 1  # it starts low
    assert report.hub_latency["concurrency_max"] == CEILING
    assert hub.peak_deletes_in_flight == CEILING
    assert report.hub_latency["spacing_max_ms"] > 0
    assert f"jhle_culler_concurrency {float(report.hub_latency['concurrency_last'])}" in metrics


async def test_no_budget_keeps_the_fixed_concurrency_and_sends_no_probe(hub, run_pass):
    report, metrics = await run_pass(budget=0)
    assert report.counts["culled"] == 150
    assert hub.peak_deletes_in_flight == CEILING
    assert probes(hub) == 0
    assert report.hub_latency is None and report.summary()["hub_latency"] is None
    assert f"jhle_culler_concurrency {float(CEILING)}" in metrics


async def test_a_probe_the_hub_refuses_falls_back_to_the_fixed_concurrency(hub, run_pass, caplog):
    report, _ = await run_pass(budget=0.025, probe_url=hub.url + "/no/api")  # 404
    assert report.counts["culled"] == 150
    assert hub.peak_deletes_in_flight == CEILING
    assert report.hub_latency["samples"] == 0  # refused at once: no more probes in this pass
    assert caplog.text.count("Cannot time the hub") == 1


async def test_gate_resizes_while_holders_wait():
    gate = Gate(1)
    entered = []

    async def holder(i):
        async with gate.slot():
            entered.append(i)
            await asyncio.sleep(0.05)

    tasks = [asyncio.ensure_future(holder(i)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert entered == [0] and gate.take_full()
    await gate.resize(3)
    await asyncio.sleep(0.01)
    assert entered == [0, 1, 2] and gate.in_flight == 3
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert gate.peak == 3 and gate.in_flight == 0
    assert gate.take_full()  # three holders reached the limit of three
    assert not gate.take_full()  # and nobody since


async def test_gate_spaces_the_starts_of_its_holders():
    """With a spacing, holders that get a place at once wait their turn, one spacing apart."""
    slept = []

    async def sleep(seconds):  # a clock that stands still: what each holder waits is exact
        slept.append(seconds)

    gate = Gate(3, clock=lambda: 100.0, sleep=sleep)
    gate.space(1.0)

    async def holder():
        async with gate.slot():
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(holder() for _ in range(3))), 10)
    assert slept == [1.0, 2.0]  # the first starts now, the others 1 s and 2 s later
    assert len(gate.durations) == 3 and gate.in_flight == 0 and gate.peak == 3
    gate.space(0.0)
    slept.clear()
    await asyncio.wait_for(asyncio.gather(*(holder() for _ in range(3))), 10)
    assert slept == []  # no spacing: nobody waits


@pytest.mark.parametrize(
    "argv, adaptive",
    [([], True), (["--hub-latency-budget=0"], False), (["--hub-latency-budget=off"], False)],
)
def test_the_app_builds_the_throttle_from_the_budget(argv, adaptive, monkeypatch):
    for var in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL"):
        monkeypatch.delenv(var, raising=False)
    app = LabIdleCuller()
    app.initialize(["--url=http://127.0.0.1:9/hub/api", "--concurrency=7", *argv])
    throttle = app.make_throttle(CullerMetrics(make_registry()))
    assert throttle.adaptive is adaptive and throttle.ceiling == 7
    assert (app.probe_hub is not None) is adaptive
    if adaptive:
        assert throttle.budget == pytest.approx(0.025)  # the default: 25 ms
