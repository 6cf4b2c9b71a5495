"""Benchmark: N concurrent users' spawns on a two-node swarm vs one node vs the local-process
spawner, same run, rounds alternated.

A real two-node swarm (tests/e2e/swarm_env.py: dockerd per network namespace, node 1 manages), a
real hub + CHP per mode and round, N system users (made here, removed at the end), one shared
conda-layout env. Modes:

- ``swarm-2``: ``conda-kernel-swarm``, swarm spreads the services over both nodes;
- ``swarm-1``: the same, every service constrained to node 1;
- ``local``: ``conda-kernel`` (the local-process spawner: setuid processes on the host), the anchor.

Per round and mode: all N ``POST /users/U/server`` at once, each user's time from the request to
its server listed ready (polled every 0.25 s), and the wall time until all are ready; then the
hub's stop of the N (all ``DELETE`` at once until none is listed) and a second start of the same N
(warm: images and envs in the page cache). Ratios are to ``local`` of the same round.

Usage: ``python bench/bench_swarm.py [--users 20] [--rounds 3] [--budget 1500]``. Run as root.
Rounds stop early (after the first) when the budget in seconds is spent. Prints markdown tables
and writes bench/results/swarm.json. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
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

from _common import report, summary, use_harness  # noqa: E402

use_harness()

from envs import make_conda_env, trusted_dir  # noqa: E402
from harness import Hub, ensure_installed, remove_test_users, wait_until  # noqa: E402
from swarm_env import MultiNodeSwarm  # noqa: E402

MODES = ("swarm-2", "swarm-1", "local")


def hub_config(mode: str, swarm: MultiNodeSwarm, shared: Path) -> str:
    common = """
    c.JupyterHub.concurrent_spawn_limit = 0
    c.JupyterHub.last_activity_interval = 3600
    c.Spawner.start_timeout = 300
    c.Spawner.http_timeout = 240
    c.Spawner.default_url = '/lab'
    """
    if mode == "local":
        return (
            common
            + f"""
    c.JupyterHub.spawner_class = 'conda-kernel'
    c.LocalCondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]
    c.LocalCondaKernelSpawner.default_env = 'shared/py'
    """
        )
    placement = (
        f"c.CondaKernelSwarmSpawner.extra_placement_spec = "
        f"{{'constraints': [{swarm.constraint(swarm.nodes[0])!r}]}}\n"
        if mode == "swarm-1"
        else ""
    )
    return (
        common
        + f"""
    c.JupyterHub.spawner_class = 'conda-kernel-swarm'
    c.JupyterHub.hub_ip = {swarm.bridge_address!r}
    c.JupyterHub.hub_connect_ip = {swarm.bridge_address!r}
    c.CondaKernelSwarmSpawner.image = {swarm.image!r}
    c.CondaKernelSwarmSpawner.shared_env_dirs = [{str(shared)!r}]
    c.CondaKernelSwarmSpawner.default_env = 'shared/py'
    c.CondaKernelSwarmSpawner.cmd = None
    """
        + placement
    )


def ready_users(hub: Hub, names: list[str]) -> set[str]:
    resp = hub.api("GET", "users", params={"state": "ready", "limit": 500})
    return {u["name"] for u in resp.json() if u["name"] in names}


def listed_users(hub: Hub, names: list[str]) -> set[str]:
    resp = hub.api("GET", "users", params={"state": "active", "limit": 500})
    return {u["name"] for u in resp.json() if u["name"] in names}


def start_all(hub: Hub, names: list[str], timeout: float) -> dict:
    """All spawns at once; per-user seconds from request to ready, and the wall time."""
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        codes = list(
            pool.map(lambda n: hub.api("POST", f"users/{n}/server", timeout=300).status_code, names)
        )
    bad = [c for c in codes if c not in (201, 202)]
    if bad:
        raise RuntimeError(f"spawn requests refused: {bad}\n{hub.log_tail(40)}")
    seen: dict[str, float] = {}
    deadline = t0 + timeout
    while len(seen) < len(names) and time.monotonic() < deadline:
        now = time.monotonic()
        for name in ready_users(hub, names) - set(seen):
            seen[name] = now - t0
        time.sleep(0.25)
    if len(seen) < len(names):
        raise TimeoutError(f"{len(names) - len(seen)} servers not ready\n{hub.log_tail(40)}")
    return {"per_user": sorted(seen.values()), "wall": max(seen.values())}


def stop_all(hub: Hub, names: list[str], timeout: float) -> float:
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: hub.api("DELETE", f"users/{n}/server", timeout=300), names))
    wait_until(
        lambda: not listed_users(hub, names), timeout=timeout, interval=0.25, what="all stopped"
    )
    return time.monotonic() - t0


def one_round(mode: str, work: Path, swarm: MultiNodeSwarm, shared: Path, names: list[str]):
    hub = Hub(work, config=hub_config(mode, swarm, shared), authenticator=None, env=swarm.env())
    hub.start()
    try:
        for name in names:
            resp = hub.api("POST", f"users/{name}")
            assert resp.status_code in (201, 409), resp.text
        first = start_all(hub, names, timeout=600)
        spread = node_spread(swarm) if mode != "local" else {}
        stop = stop_all(hub, names, timeout=300)
        if mode != "local":
            api = swarm.manager.engine.client.api
            wait_until(lambda: not api.services(), timeout=120, what="services removed")
        second = start_all(hub, names, timeout=600)
        stop_all(hub, names, timeout=300)
        return {"first": first, "stop": stop, "second": second, "spread": spread}
    finally:
        hub.stop()


def node_spread(swarm: MultiNodeSwarm) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in swarm.running_tasks():
        node = swarm.node_of(task["NodeID"]).name
        counts[node] = counts.get(node, 0) + 1
    return counts


def make_users(prefix: str, homes: Path, count: int) -> list[str]:
    names = [f"{prefix}u{i:02d}" for i in range(count)]
    for name in names:
        subprocess.run(["useradd", "-m", "-b", str(homes), name], check=True)
    return names


def tables(results: dict[str, list[dict]]) -> None:
    def med(mode, key):
        return statistics.median(r[key] for r in results[mode])

    rows, data = [], {"rounds": results, "summary": {}}
    for mode in MODES:
        if not results[mode]:
            continue
        per_user = [v for r in results[mode] for v in r["first"]["per_user"]]
        row = {
            "first_wall": med(mode, "first_wall"),
            "per_user_median": summary(per_user)["median"],
            "per_user_p90": summary(per_user)["p90"],
            "stop_wall": med(mode, "stop"),
            "second_wall": med(mode, "second_wall"),
        }
        data["summary"][mode] = row
    base = data["summary"].get("local")
    for mode, row in data["summary"].items():
        ratio = {k: row[k] / base[k] if base and base[k] else float("nan") for k in row}
        row["ratio_to_local"] = ratio
        rows.append(
            [
                mode,
                len(results[mode]),
                row["first_wall"],
                ratio["first_wall"],
                row["per_user_median"],
                row["per_user_p90"],
                row["stop_wall"],
                ratio["stop_wall"],
                row["second_wall"],
                ratio["second_wall"],
            ]
        )
    columns = [
        "mode",
        "rounds",
        "all ready (s)",
        "x local",
        "per-user median (s)",
        "per-user p90 (s)",
        "stop all (s)",
        "x local",
        "start again (s)",
        "x local",
    ]
    report("swarm", "Spawn -> ready, concurrent users (medians over rounds)", columns, rows, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1500, help="seconds for all rounds")
    args = parser.parse_args()
    if not 1 <= args.users <= 50 or not 1 <= args.rounds <= 10:
        parser.error("--users 1..50, --rounds 1..10")

    ensure_installed()  # the hubs import the installed package: make it this tree
    prefix = f"jb{secrets.token_hex(2)}-"
    work = Path(tempfile.mkdtemp(prefix="jhle-bench-swarm-"))
    work.chmod(0o755)
    homes = work / "homes"
    homes.mkdir(mode=0o755)
    shared = trusted_dir("bench-swarm-envs-")
    swarm = MultiNodeSwarm(2)
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    try:
        make_conda_env(shared / "py")
        names = make_users(prefix, homes, args.users)
        swarm.start()
        t0 = time.monotonic()
        for k in range(args.rounds):
            if k and time.monotonic() - t0 > args.budget:
                print(f"budget spent after {k} rounds", file=sys.stderr)
                break
            order = MODES if k % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                out = one_round(mode, work / f"{mode}-{k}", swarm, shared, names)
                out["first_wall"] = out["first"]["wall"]
                out["second_wall"] = out["second"]["wall"]
                results[mode].append(out)
                print(
                    f"round {k} {mode}: all ready {out['first_wall']:.1f} s,"
                    f" stop {out['stop']:.1f} s, again {out['second_wall']:.1f} s"
                    f" {out['spread']}",
                    file=sys.stderr,
                    flush=True,
                )
        tables(results)
    finally:
        swarm.stop()
        with contextlib.suppress(Exception):
            remove_test_users(prefix, [homes])
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
