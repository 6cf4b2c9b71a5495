"""Benchmark: first-login account provisioning, ours vs the anchor, same machine, same run.

N users log in "at once" (N coroutines on one event loop, as N first logins on a hub). Each
needs a system account, a home under a temp root and a copy of a template of F files.

- **ours**: ``SystemUsers.ensure_account`` + ``populate_home`` (async subprocess, per-name and
  account-database locks, file work in threads, registry, safe template copy).
- **anchor**: JupyterHub's ``LocalAuthenticator.add_user`` with ``create_system_users`` and
  ``add_user_cmd = adduser -q --gecos "" --disabled-password --home ROOT/USERNAME`` (the
  default plus a home root), followed by the template copy the seed deployment did by hand
  (``copytree`` into the home, then a ``chown -R`` walk), on the event loop as it did.

Reported per variant: wall time for all N, and the longest event-loop stall seen by a 5 ms
ticker while they ran (a stalled loop means every other user of the hub waits). Rounds
alternate ours/anchor; every account (prefix ``jb`` + random hex) is deleted with its home after
each round, also on failure. Run as root::

    python bench/bench_system_users.py [--users 20] [--files 50] [--rounds 3]

Prints a markdown table with ratios (ours / anchor) and writes bench/results/system_users.json.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import report  # noqa: E402

from jupyterhub_lab_ext.accounts.system_users import AccountSpec, SystemUsers  # noqa: E402


class _User:  # what LocalAuthenticator.add_user needs of a hub user
    def __init__(self, name: str):
        self.name = name


async def _lag_monitor(stop: asyncio.Event, out: list[float], tick: float = 0.005) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(tick)
        now = time.perf_counter()
        out.append(now - last - tick)
        last = now


async def _timed(work) -> tuple[float, float]:
    stop, lags = asyncio.Event(), []
    monitor = asyncio.create_task(_lag_monitor(stop, lags))
    await asyncio.sleep(0.02)
    t0 = time.perf_counter()
    await work()
    wall = time.perf_counter() - t0
    stop.set()
    await monitor
    return wall, max(lags, default=0.0)


async def run_ours(names, root: Path, template: Path, state: Path) -> tuple[float, float]:
    su = SystemUsers(state_dir=str(state))

    async def one(name):
        account = await su.ensure_account(AccountSpec(name, str(root / name)))
        await su.populate_home(account, str(template))

    async def work():
        await asyncio.gather(*(one(n) for n in names))

    return await _timed(work)


async def run_anchor(names, root: Path, template: Path) -> tuple[float, float]:
    from jupyterhub.auth import LocalAuthenticator

    auth = LocalAuthenticator(
        create_system_users=True,
        add_user_cmd=["adduser", "-q", "--gecos", "", "--disabled-password",
                      "--home", f"{root}/USERNAME"],
    )  # fmt: skip

    async def one(name):
        await auth.add_user(_User(name))
        pw = pwd.getpwnam(name)
        dest = Path(pw.pw_dir) / template.name
        shutil.copytree(template, dest, dirs_exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(pw.pw_dir):
            for entry in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                os.lchown(entry, pw.pw_uid, pw.pw_gid)

    async def work():
        await asyncio.gather(*(one(n) for n in names))

    return await _timed(work)


def remove_users(prefix: str, root: Path) -> None:
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix):
            subprocess.run(["userdel", "-f", entry.pw_name], capture_output=True, check=False)
    with open("/etc/group") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name.startswith(prefix):
                subprocess.run(["groupdel", name], capture_output=True, check=False)
    for child in root.iterdir():
        shutil.rmtree(child, ignore_errors=True)


def make_template(path: Path, files: int) -> None:
    for i in range(files):
        sub = path / f"week{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"lesson{i}.ipynb").write_text('{"cells": []}\n' + "x" * 4096)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (creates system users)", file=sys.stderr)
        return 2
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "anchor": []}
    with tempfile.TemporaryDirectory(prefix="jhle-bench-") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "homes"
        root.mkdir(mode=0o755)
        os.chmod(tmp_path, 0o755)
        template = tmp_path / "notebooks"
        make_template(template, args.files)
        for rnd in range(args.rounds):
            order = ["ours", "anchor"] if rnd % 2 == 0 else ["anchor", "ours"]
            for variant in order:
                prefix = f"jb{secrets.token_hex(2)}-"
                names = [f"{prefix}{i:03d}" for i in range(args.users)]
                try:
                    if variant == "ours":
                        state = tmp_path / f"state-{prefix}"
                        result = asyncio.run(run_ours(names, root, template, state))
                    else:
                        result = asyncio.run(run_anchor(names, root, template))
                finally:
                    remove_users(prefix, root)
                results[variant].append(result)
                print(f"round {rnd + 1} {variant}: {result[0]:.2f} s, max stall {result[1]:.3f} s")
    med = {
        v: (statistics.median(w for w, _ in r), statistics.median(s for _, s in r))
        for v, r in results.items()
    }
    rows = [
        [v, args.users, args.files, med[v][0], 1000 * med[v][0] / args.users, 1000 * med[v][1]]
        for v in ("ours", "anchor")
    ]
    rows.append(
        ["ratio ours/anchor", "", "", med["ours"][0] / med["anchor"][0], "",
         med["ours"][1] / med["anchor"][1] if med["anchor"][1] else float("nan")]
    )  # fmt: skip
    report(
        "system_users",
        f"First-login provisioning of {args.users} concurrent users "
        f"(median of {args.rounds} rounds)",
        ["variant", "users", "template files", "wall s", "ms per user", "max loop stall ms"],
        rows,
        {"args": vars(args), "rounds": results, "median": med},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
