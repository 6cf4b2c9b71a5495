"""Benchmark: our idle culler vs jupyterhub-idle-culler 2.x, same workload, same run.

**Real hub (the primary table).** For each run a fresh JupyterHub + configurable-http-proxy whose
spawner runs nothing (tests/support/fakespawner.py: servers start at once, a stop takes 50 ms),
``--users`` users with a running server each, ``--idle-fraction`` of them idle (the others report
activity); scenarios 20% idle and all idle. Three cullers, each a subprocess with the same flags
(``--timeout=5 --cull-every=86400 --concurrency=10``): jupyterhub-idle-culler (the anchor), ours
with the default hub latency budget (25 ms) and ours with the budget off. Per run: 5 s of the
idle hub, then the culler starts. Meanwhile another token asks ``GET /hub/api/users?limit=1``
through the proxy every ``--probe-interval`` (200 ms): the hub's latency for everyone else. The
pass is timed from the culler's first request to the hub until its last stop, both read from the
hub's access log. The order of the cullers rotates from run to run; pass time and p50 are
medians of ``--runs`` runs; p95 and p99 are of the probe samples of all runs pooled (a single
pass has 25-100 samples: its own p99 is nearly its maximum).

``BENCH_CULLER_DEBUG=1`` keeps each run's directory with the probe's samples (``probe.json``) and
the hub's slow garbage collections (``hub-gc.log``) for ``bench/culler_timeline.py``;
``BENCH_CULLER_DEBUG=2`` also runs our culler at ``--log-level=DEBUG``.

**Fake hub (secondary).** The older table: a fake Hub API in this process (tornado; ``DELETE``
takes 50 ms; no CPU cost per stop), which hides that on a real hub the hub is the bottleneck.

Usage::

    python bench/bench_culler.py                  # real hub: 1000 users, 20% and all idle, 3 runs
    python bench/bench_culler.py --runs 1 --users 200 --scenarios 0.2 --fake-users 0

Prints markdown tables (with ratios against jupyterhub-idle-culler and the issue's targets) and
the same numbers as JSON, also written to ``bench/results/culler.json``. Run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, pct, use_harness  # noqa: E402

use_harness()
from fakehub import FakeHub  # noqa: E402
from realhub import (  # noqa: E402
    HubLog,
    LatencyProbe,
    Service,
    add_users,
    count_running,
    fresh_hub,
    latency_ms,
    report_activity,
    start_servers,
)
from realhub import start_service as spawn  # noqa: E402
from realhub import stop_service as stop  # noqa: E402

KINDS = ("upstream", "ours", "ours-off")
NAMES = {
    "upstream": "jupyterhub-idle-culler 2.0 (anchor)",
    "ours": "ours, budget 25 ms (default)",
    "ours-off": "ours, budget off",
}
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
BUDGET_MS = 25.0


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def culler_command(kind: str, api_url: str, args, workdir: str) -> list[str]:
    common = [
        f"--url={api_url}",
        f"--timeout={args.timeout}",
        "--cull-every=86400",
        f"--concurrency={args.concurrency}",
    ]
    if args.page_size:
        common.append(f"--api-page-size={args.page_size}")
    if kind == "upstream":
        return [sys.executable, "-m", "jupyterhub_idle_culler", *common]
    ours = [*common, f"--db-url=sqlite:///{workdir}/culler.sqlite"]
    if kind == "ours-off":
        ours.append("--hub-latency-budget=off")
    if os.environ.get("BENCH_CULLER_DEBUG") == "2":
        ours.append("--log-level=DEBUG")
    return [sys.executable, "-m", "jupyterhub_lab_ext.services.culler", *ours]


def idle_names(names: list[str], fraction: float) -> list[str]:
    """``fraction`` of ``names``, spread over the listing."""
    n, k = len(names), int(round(len(names) * fraction))
    return [x for i, x in enumerate(names) if (i * k) // n != ((i + 1) * k) // n]


# ------------------------------------------------------------------------------ real hub


async def set_scene(hub, args, fraction: float) -> tuple[list[str], list[str]]:
    names = [f"u{i:04d}" for i in range(args.users)]
    idle = idle_names(names, fraction)
    active = sorted(set(names) - set(idle))
    await add_users(hub, names)
    await start_servers(hub, names)
    await asyncio.sleep(args.timeout + 1)  # every server idle past the timeout
    await report_activity(hub, active)  # ... but these report activity
    return idle, active


async def watch_pass(log: HubLog, proc, n_idle: int, time_limit: float) -> bool:
    """Wait until the culler's stops of all idle servers are in the hub's log (bounded)."""
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline and proc.poll() is None:
        await asyncio.sleep(0.25)
        stops = [r for r in log.requests("bench-culler") if r.method == "DELETE" and r.status < 300]
        if len(stops) >= n_idle:
            return True
    return False


def pass_line(log_path: Path) -> str:
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if "] Pass 1" in ln]
    return lines[-1].split("] ", 1)[-1] if lines else ""


async def real_run(kind: str, fraction: float, run: int, args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-culler-{kind}-"))
    culler, probe_svc = (
        Service("bench-culler", CULLER_SCOPES),
        Service("bench-probe", ["list:users"]),
    )
    debug = bool(os.environ.get("BENCH_CULLER_DEBUG"))
    gc_log = workdir / "hub-gc.log" if debug else None
    hub = fresh_hub(workdir / "hub", [culler, probe_svc], stop_seconds=args.latency, gc_log=gc_log)
    proc, probe = None, None
    result = {"culler": kind, "scenario": fraction, "run": run, "users": args.users, "ok": False}
    result["load1"] = round(os.getloadavg()[0], 2)
    try:
        idle, active = await set_scene(hub, args, fraction)
        probe = LatencyProbe(
            hub, probe_svc.token, interval=args.probe_interval, max_seconds=args.time_limit + 60
        )
        probe.start()
        t_idle = time.time()
        await asyncio.sleep(args.idle_seconds)
        log = HubLog(hub)
        log.mark()
        t_culler = time.time()
        cmd = culler_command(kind, f"http://127.0.0.1:{hub.hub_port}/hub/api", args, str(workdir))
        proc = spawn(cmd, str(workdir), culler.token, workdir / "culler.log")
        done = await watch_pass(log, proc, len(idle), args.time_limit)
        await asyncio.sleep(0.5)
        stop(proc)
        await probe.stop()
        reqs = log.requests("bench-culler")
        stops = [r for r in reqs if r.method == "DELETE" and r.status < 300]
        start = min((r.start for r in reqs), default=t_culler)
        end = max((r.end for r in stops), default=time.time())
        running = await count_running(hub)
        during = probe.between(start, end)
        if debug:
            (workdir / "probe.json").write_text(
                json.dumps({"pass": [start, end], "samples": probe.samples})
            )
            print(f"# debug: {workdir}", file=sys.stderr)
        result.update(
            {
                "ok": done and running == len(active),
                "idle": len(idle),
                "pass_seconds": round(end - start, 3),
                "hub_idle_ms": latency_ms(probe.between(t_idle, t_culler)),
                "hub_during_ms": latency_ms(during),
                "during_samples_ms": [round(1000 * x, 2) for x in during],
                "probe_errors": probe.errors,
                "gets": sum(r.method == "GET" for r in reqs),
                "deletes": len(stops),
                "servers_left": running,
                "culler_log": pass_line(workdir / "culler.log") if kind != "upstream" else "",
            }
        )
    finally:
        stop(proc)
        if probe is not None:
            await probe.stop()
        hub.stop()
    tag = "ok" if result["ok"] else "NOT OK"
    print(
        f"# {fraction:.0%} idle, run {run}, {kind}: {result.get('pass_seconds')} s, "
        f"p50 {result.get('hub_during_ms', {}).get('p50')} ms, {tag}",
        file=sys.stderr,
    )
    return result


def pooled(samples_ms: list[float]) -> dict:
    """p95/p99 of the samples of all runs together (one run's p99 is nearly its maximum)."""
    if not samples_ms:
        return {"p95": None, "p99": None, "samples": 0}
    return {
        "p95": round(pct(samples_ms, 95), 2),
        "p99": round(pct(samples_ms, 99), 2),
        "samples": len(samples_ms),
    }


def aggregate(results: list[dict]) -> dict:
    """(scenario, kind) -> medians over the runs."""
    out = {}
    for r in results:
        out.setdefault((r["scenario"], r["culler"]), []).append(r)
    agg = {}
    for key, runs in out.items():
        agg[key] = {
            "runs": len(runs),
            "ok": sum(r["ok"] for r in runs),
            "pass_seconds": median([r.get("pass_seconds") for r in runs]),
            "idle_p50": median([r.get("hub_idle_ms", {}).get("p50") for r in runs]),
            "p50": median([r.get("hub_during_ms", {}).get("p50") for r in runs]),
            "p99_median": median([r.get("hub_during_ms", {}).get("p99") for r in runs]),
            **pooled([x for r in runs for x in r.get("during_samples_ms", [])]),
            "load": median([r.get("load1") for r in runs]),
        }
    return agg


def real_table(agg: dict) -> list[str]:
    lines = [
        "| idle | culler | pass (s) | hub p50 idle (ms) | hub p50 / p95 / p99 during the pass (ms) "
        "| pass vs anchor | p50 / p95 / p99 vs anchor | load (1 min) | runs ok |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (fraction, kind), a in sorted(
        agg.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))
    ):
        anchor = agg.get((fraction, "upstream"), {})
        speed = ratio(anchor.get("pass_seconds"), a["pass_seconds"])
        vs = " / ".join(f"{ratio(a[q], anchor.get(q))}x" for q in ("p50", "p95", "p99"))
        lines.append(
            f"| {fraction:.0%} | {NAMES[kind]} | {a['pass_seconds']} | {a['idle_p50']} "
            f"| {a['p50']} / {a['p95']} / {a['p99']} | {speed}x faster | {vs} "
            f"| {a['load']} | {a['ok']}/{a['runs']} |"
        )
    return lines


def targets(agg: dict) -> list[str]:
    """Issue 13's targets, checked on the 20%-idle scenario."""
    up, ours, off = (agg.get((0.2, k)) for k in KINDS)
    if not (up and ours and off):
        return []
    return [
        f"- default budget: hub p50 during the pass {ours['p50']} ms <= idle p50 "
        f"{ours['idle_p50']} + {BUDGET_MS:g} ms: {ours['p50'] <= ours['idle_p50'] + BUDGET_MS}",
        f"- default budget: hub p99 {ours['p99']} ms <= idle-culler's {up['p99']} ms: "
        f"{ours['p99'] <= up['p99']}",
        f"- default budget: pass {ours['pass_seconds']} s faster than idle-culler's "
        f"{up['pass_seconds']} s: {ours['pass_seconds'] < up['pass_seconds']}",
        f"- budget off: {ratio(up['pass_seconds'], off['pass_seconds'])}x faster than "
        f"idle-culler (target >= 3x): {up['pass_seconds'] >= 3 * off['pass_seconds']}",
    ]


async def run_real(args) -> list[dict]:
    results = []
    kinds = [k for k in KINDS if k in args.kinds]
    for fraction in args.scenarios:
        for run in range(args.runs):
            order = kinds[run % len(kinds) :] + kinds[: run % len(kinds)]  # each goes first once
            for kind in order:
                results.append(await real_run(kind, fraction, run, args))
    return results


# ------------------------------------------------------------------------------ fake hub


async def fake_run(kind: str, n_users: int, args) -> dict:
    hub = FakeHub("bench-token", stop_latency=args.latency)
    now = datetime.now(timezone.utc)
    names = [f"user-{i:06d}" for i in range(n_users)]
    idle = set(idle_names(names, args.scenarios[0]))
    for name in names:
        when = now - timedelta(hours=2) if name in idle else now
        hub.add_user(name, created=now - timedelta(days=30), last_activity=now)
        hub.add_server(name, started=when, last_activity=when)
    await hub.start()
    workdir = tempfile.mkdtemp(prefix=f"bench-culler-fake-{kind}-")
    fake_args = argparse.Namespace(**{**vars(args), "timeout": 3600})
    proc = spawn(
        culler_command(kind, hub.api_url, fake_args, workdir),
        workdir,
        "bench-token",
        Path(workdir) / "culler.log",
    )
    result = {"culler": kind, "users": n_users, "idle": len(idle), "ok": False}
    try:
        deadline, quiet_since = time.monotonic() + args.time_limit, None
        while time.monotonic() < deadline and proc.poll() is None:
            await asyncio.sleep(0.05)
            left = sum(1 for n in idle if hub.users[n].servers)
            if left == 0 and hub.in_flight == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.0:
                    result["ok"] = True
                    break
            else:
                quiet_since = None
        result.update(
            {
                "pass_seconds": round((hub.t_last or 0) - (hub.t_first or 0), 3),
                "gets": sum(v for (m, _), v in hub.requests.items() if m == "GET"),
                "deletes": sum(v for (m, _), v in hub.requests.items() if m == "DELETE"),
                "peak_deletes_in_flight": hub.peak_deletes_in_flight,
            }
        )
    finally:
        stop(proc)
        await hub.stop()
    print(f"# fake hub n={n_users} {kind}: {result.get('pass_seconds')} s", file=sys.stderr)
    return result


def fake_table(results: list[dict]) -> list[str]:
    lines = [
        "| users | idle | culler | pass (s) | API calls (GET/DELETE) | peak DELETEs in flight "
        "| pass vs anchor |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    anchor = {r["users"]: r for r in results if r["culler"] == "upstream"}
    for r in results:
        a = anchor.get(r["users"], {})
        lines.append(
            f"| {r['users']} | {r['idle']} | {NAMES[r['culler']]} | {r['pass_seconds']} "
            f"| {r['gets'] + r['deletes']} ({r['gets']}/{r['deletes']}) "
            f"| {r['peak_deletes_in_flight']} | {ratio(a.get('pass_seconds'), r['pass_seconds'])}x |"
        )
    return lines


async def run_fake(args) -> list[dict]:
    results = []
    for n in args.fake_users:
        for kind in KINDS:
            results.append(await fake_run(kind, n, args))
    return results


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000, help="users on the real hub")
    ap.add_argument(
        "--scenarios",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.2, 1.0],
        help="idle fractions, comma-separated (default 0.2,1)",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per culler and scenario")
    ap.add_argument(
        "--kinds",
        type=lambda s: s.split(","),
        default=list(KINDS),
        help="cullers, comma-separated: upstream,ours,ours-off (default: all)",
    )
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per stop")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--page-size", type=int, default=0, help="--api-page-size (0: hub default)")
    ap.add_argument("--timeout", type=int, default=5, help="culler idle timeout on the real hub")
    ap.add_argument(
        "--probe-interval", type=float, default=0.2, help="seconds between the others' probes"
    )
    ap.add_argument("--idle-seconds", type=float, default=5, help="idle hub probed before a run")
    ap.add_argument("--time-limit", type=float, default=600, help="max seconds per culler run")
    ap.add_argument(
        "--fake-users",
        type=lambda s: [int(x) for x in s.split(",") if x.strip() and int(x)],
        default=[1000],
        help="users on the fake hub, comma-separated (0: skip the fake-hub table)",
    )
    args = ap.parse_args(argv)
    load = os.getloadavg()
    real = asyncio.run(run_real(args)) if args.runs else []
    fake = asyncio.run(run_fake(args)) if args.fake_users else []
    agg = aggregate(real)
    print(f"\nload average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if real:
        print(f"\n### Real JupyterHub + CHP, {args.users} users, median of {args.runs} runs\n")
        print("\n".join(real_table(agg)))
        print("\n" + "\n".join(targets(agg)))
    if fake:
        print("\n### Secondary: fake Hub API (no hub CPU per stop), one run\n")
        print("\n".join(fake_table(fake)))
    data = {
        "bench": "culler",
        "params": vars(args),
        "load_before": load,
        "real_hub": {
            "runs": real,
            "medians": [{"scenario": f, "culler": k, **v} for (f, k), v in agg.items()],
        },
        "fake_hub": fake,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "culler.json").write_text(json.dumps(data, indent=1))
    print("\n(JSON: bench/results/culler.json)")
    return 0 if all(r["ok"] for r in real + fake) else 1


if __name__ == "__main__":
    sys.exit(main())
