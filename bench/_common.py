"""Shared bits for the benchmarks: result tables (markdown + JSON) and statistics."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TESTS = Path(__file__).resolve().parents[1] / "tests"


def use_harness() -> None:
    """Make tests/e2e/harness.py (the real-component helpers) and tests/support (fakes) importable."""
    for sub in ("support", "e2e"):
        if str(TESTS / sub) not in sys.path:
            sys.path.insert(0, str(TESTS / sub))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p90": pct(values, 90),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def report(name: str, title: str, columns: list[str], rows: list[list], data: dict) -> None:
    """Print a markdown table and write ``bench/results/<name>.json``."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(_fmt(v) for v in row) + " |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    print(f"\n(JSON: bench/results/{name}.json)")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
