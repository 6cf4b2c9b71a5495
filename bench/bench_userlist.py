"""Benchmark: userlist load time, ours vs the seeds' parser, 1k and 100k lines.

The anchor is the parser of the deployments we replace (jupyterhub-deploy-docker and the
AWS summer-camp hub): whitespace split, first token a name, second token ``admin``, no
comments, no validation, no username mapping. Ours also strips comments, validates every
token, maps every identity to a POSIX username (with per-domain rules), and checks
duplicates and collisions, so a ratio above 1 is expected; the point is that 100k lines load
well under a second. Also shown: the cost of a hot-reload check when the file is unchanged
(one ``stat``).

Usage::

    python bench/bench_userlist.py [--sizes 1000 100000] [--repeat 5]

Prints a markdown table and writes bench/results/userlist.json. Not a test: nothing asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import report, summary  # noqa: E402

from jupyterhub_lab_ext.auth.naming import make_normalizer  # noqa: E402
from jupyterhub_lab_ext.auth.userlist_file import UserlistFile, load_userlist  # noqa: E402


def seed_parser(path: str) -> tuple[set, set]:
    """What the seeds did (re-implemented): names and admins, nothing checked."""
    allowed, admins = set(), set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                allowed.add(parts[0])
                if len(parts) > 1 and parts[1] == "admin":
                    admins.add(parts[0])
    return allowed, admins


def write_list(directory: str, n: int) -> str:
    path = Path(directory) / f"userlist-{n}"
    lines = ["# generated userlist"]
    for i in range(n):
        if i % 3 == 0:
            lines.append(f"student.{i}@example.org group:course{i % 7}")
        elif i % 3 == 1:
            lines.append(f"user{i}@gmail.com  # guest")
        else:
            lines.append(f"login{i}" + (" admin" if i % 100 == 2 else ""))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--repeat", type=int, default=5)
    args, _ = ap.parse_known_args(argv)
    norm = make_normalizer(domain_rules={"example.org": ""})
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as d:
        for n in args.sizes:
            path = write_list(d, n)
            ours = timed(lambda p=path: load_userlist(p, username_for=norm), args.repeat)
            seed = timed(lambda p=path: seed_parser(p), args.repeat)
            uf = UserlistFile(path, username_for=norm)
            uf.get()
            check = timed(uf.get, max(args.repeat, 1000))
            s_ours, s_seed, s_check = summary(ours), summary(seed), summary(check)
            ratio = s_ours["median"] / s_seed["median"]
            rows.append(
                [n, s_ours["median"], s_seed["median"], f"{ratio:.1f}x", s_check["median"] * 1e6]
            )
            data[str(n)] = {"ours_s": s_ours, "seed_s": s_seed, "ratio": ratio, "check_s": s_check}
    report(
        "userlist",
        "Userlist load (median seconds; ratio = ours / seed parser)",
        ["lines", "ours (s)", "seed parser (s)", "ratio", "unchanged check (µs)"],
        rows,
        data,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
