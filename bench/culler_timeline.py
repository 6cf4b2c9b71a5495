"""Where the hub's slow answers during a culler pass come from (the culler benchmark's debug mode).

Reads a run directory written by ``BENCH_CULLER_DEBUG=1 python bench/bench_culler.py`` (the
others' probe samples, the hub's access log and its garbage collections) and puts each probe
sample of the pass next to what the culler had in flight at the hub while it waited: stops
(``DELETE``), page reads (``GET /users`` with more than one user), the culler's own probe
(``GET /users?limit=1``), group lookups, and the hub's slow garbage collections. Then compares
the slowest 5% of the samples with the rest.

Usage::

    python bench/culler_timeline.py /tmp/bench-culler-ours-XXXX [--all]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realhub import HubLog  # noqa: E402


class _LogOf:
    """What :class:`HubLog` needs of a hub: its workdir."""

    def __init__(self, workdir: Path):
        self.workdir = workdir


def kind_of(req) -> str:
    if req.method == "DELETE":
        return "stop"
    if req.path in ("/hub/api/", "/hub/api") or req.path.startswith("/hub/api/users?limit=1"):
        return "probe"  # our culler's (now the version, before the listing of one user)
    if req.path.startswith("/hub/api/users"):
        return "page"
    if req.path.startswith("/hub/api/groups"):
        return "group"
    return "other"


def load(run: Path):
    probe = json.loads((run / "probe.json").read_text())
    reqs = [r for r in HubLog(_LogOf(run / "hub")).requests() if r.client == "bench-culler"]
    others = [r for r in HubLog(_LogOf(run / "hub")).requests() if r.client == "bench-probe"]
    gcs = []
    gc_path = run / "hub-gc.log"
    if gc_path.exists():
        for line in gc_path.read_text().splitlines():
            end, gen, secs, _ = line.split()
            gcs.append((float(end) - float(secs), float(end), int(gen)))
    return probe, reqs, others, gcs


def overlapping(t0: float, t1: float, reqs) -> dict:
    counts: dict[str, int] = {}
    for r in reqs:
        if r.start < t1 and r.end > t0:
            counts[kind_of(r)] = counts.get(kind_of(r), 0) + 1
    return counts


def stops_done(t0: float, t1: float, reqs) -> int:
    return sum(1 for r in reqs if r.method == "DELETE" and t0 <= r.end <= t1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--all", action="store_true", help="print every sample, not only the slow")
    args = ap.parse_args(argv)
    probe, reqs, others, gcs = load(args.run)
    start, end = probe["pass"]
    samples = [(t, s) for t, s in probe["samples"] if start <= t <= end]
    hub_ms = {round(o.end, 1): o.ms for o in others}  # the probe's own time inside the hub
    rows = []
    for t, s in samples:
        t1 = t + s
        inflight = overlapping(t, t1, reqs)
        gc = [g for g in gcs if g[0] < t1 and g[1] > t]
        rows.append(
            {
                "t": round(t - start, 2),
                "ms": round(1000 * s, 1),
                "inside_hub_ms": hub_ms.get(round(t1, 1)),
                "in_flight": inflight,
                "stops_done": stops_done(t, t1, reqs),
                "gc": [(g[2], round(1000 * (g[1] - g[0]), 1)) for g in gc],
            }
        )
    cut = sorted(r["ms"] for r in rows)[int(0.95 * len(rows))] if rows else 0
    for r in rows:
        if args.all or r["ms"] >= cut:
            print(json.dumps(r))

    def mean(key, sel):
        vals = [key(r) for r in sel]
        return round(statistics.mean(vals), 2) if vals else None

    for label, sel in (
        ("slowest 5%", [r for r in rows if r["ms"] >= cut]),
        ("the rest", [r for r in rows if r["ms"] < cut]),
    ):
        print(
            f"{label}: n={len(sel)} ms={mean(lambda r: r['ms'], sel)} "
            f"stops in flight={mean(lambda r: r['in_flight'].get('stop', 0), sel)} "
            f"stops done={mean(lambda r: r['stops_done'], sel)} "
            f"pages={mean(lambda r: r['in_flight'].get('page', 0), sel)} "
            f"own probe={mean(lambda r: r['in_flight'].get('probe', 0), sel)} "
            f"with gc={mean(lambda r: bool(r['gc']), sel)}"
        )
    gen2 = [g for g in gcs if g[2] == 2 and start <= g[1] <= end]
    print(
        f"hub gen-2 collections in the pass: {len(gen2)}, "
        f"ms: {[round(1000 * (g[1] - g[0]), 1) for g in gen2]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
