"""Benchmark: our idle culler vs jupyterhub-idle-culler 2.x, same workload, same run.

A fake Hub API (tornado on 127.0.0.1, free port, in this process) holds N users, each with a
running default server; a fraction of them idle for two hours, the rest active now. Paginated
``GET /users`` honours ``state=``; ``DELETE /users/{name}/server`` takes ``--latency`` seconds.
Each culler runs as a subprocess (so its peak RSS can be read) and does its first pass at start;
the pass time is from the first request the hub receives to the last response once every idle
server is gone and the hub has been quiet for a moment. Then the subprocess is stopped.

Usage::

    python bench/bench_culler.py                     # 1k and 10k users, 20% idle, 50 ms stops
    python bench/bench_culler.py --users 200 --idle-fraction 1

Prints a markdown table (with ratios upstream/ours) and the same numbers as JSON, also written
to ``bench/results/culler.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests" / "support"))

from fakehub import FakeHub  # noqa: E402

TOKEN = "bench-token"


def tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:]


def peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def culler_command(kind: str, hub: FakeHub, args) -> list[str]:
    common = [
        f"--url={hub.api_url}",
        f"--timeout={args.timeout}",
        "--cull-every=86400",
        f"--concurrency={args.concurrency}",
    ]
    if args.page_size:
        common.append(f"--api-page-size={args.page_size}")
    if kind == "upstream":
        return [sys.executable, "-m", "jupyterhub_idle_culler", *common]
    return [sys.executable, "-m", "jupyterhub_lab_ext.services.culler", *common]


def spawn(cmd: list[str], cwd: str, env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


async def run_one(kind: str, n_users: int, args) -> dict:
    hub = FakeHub(TOKEN, stop_latency=args.latency)
    now = datetime.now(timezone.utc)
    n_idle = int(round(n_users * args.idle_fraction))
    for i in range(n_users):
        name = f"user-{i:06d}"
        hub.add_user(name, created=now - timedelta(days=30), last_activity=now)
        # spread the idle users over the listing
        idle = (i * n_idle) // n_users != ((i + 1) * n_idle) // n_users
        when = now - timedelta(hours=2) if idle else now
        hub.add_server(name, started=when, last_activity=when)
    await hub.start()
    workdir = tempfile.mkdtemp(prefix=f"bench-culler-{kind}-")
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    for var in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_CLIENT_ID"):
        env.pop(var, None)
    log_path = Path(workdir) / "culler.log"
    proc = None
    result = {"culler": kind, "users": n_users, "idle": n_idle, "ok": False}
    try:
        proc = spawn(culler_command(kind, hub, args), workdir, env, log_path)
        deadline = time.monotonic() + args.time_limit
        quiet_since = None
        rss = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            rss = peak_rss_mb(proc.pid) or rss
            if proc.poll() is not None:
                break
            remaining = sum(1 for u in hub.users.values() if u.servers) - (n_users - n_idle)
            if remaining <= 0 and hub.in_flight == 0 and hub.t_last is not None:
                if quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= args.quiet:
                    result["ok"] = True
                    break
            else:
                quiet_since = None
        result.update(
            {
                "pass_seconds": round((hub.t_last or 0) - (hub.t_first or 0), 3),
                "api_calls": hub.total_requests,
                "gets": sum(v for (m, _), v in hub.requests.items() if m == "GET"),
                "deletes": sum(v for (m, _), v in hub.requests.items() if m == "DELETE"),
                "peak_deletes_in_flight": hub.peak_deletes_in_flight,
                "peak_rss_mb": round(rss, 1) if rss else None,
                "servers_left_idle": max(
                    0, sum(1 for u in hub.users.values() if u.servers) - (n_users - n_idle)
                ),
                "active_culled": (n_users - n_idle)
                - sum(
                    1
                    for u in hub.users.values()
                    if u.servers and u.servers[""].last_activity >= now - timedelta(minutes=1)
                ),
            }
        )
        if not result["ok"]:
            result["log_tail"] = tail(log_path)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        await hub.stop()
    return result


# ------------------------------------------------------------------ against a real JupyterHub

REAL_HUB_CONFIG = """
import asyncio
from jupyterhub.spawner import Spawner

class BenchSpawner(Spawner):
    \"\"\"No process: 'starts' at once, pointing at the hub itself; stops after STOP_LATENCY.\"\"\"
    running = False

    async def start(self):
        self.running = True
        return ("127.0.0.1", {hub_port})

    async def stop(self, now=False):
        await asyncio.sleep({latency})
        self.running = False

    async def poll(self):
        return None if self.running else 0

c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = BenchSpawner
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.last_activity_interval = 3600
c.JupyterHub.services.append({{"name": "bench-ours", "api_token": {ours_token!r}}})
c.JupyterHub.services.append({{"name": "bench-upstream", "api_token": {up_token!r}}})
c.JupyterHub.load_roles.append({{
    "name": "bench-cullers",
    "services": ["bench-ours", "bench-upstream"],
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
}})
"""


async def _start_servers(hub, names: list[str], concurrency: int = 20) -> None:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"token {hub.admin_token}"}
    async with httpx.AsyncClient(base_url=f"{hub.url}/hub/api/", headers=headers, timeout=60) as c:

        async def one(name):
            async with sem:
                r = await c.post(f"users/{name}/server", json={})
                if r.status_code not in (201, 202):
                    raise RuntimeError(f"spawn {name}: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(one(n) for n in names))


async def _ready_count(hub) -> int:
    import httpx

    headers = {"Authorization": f"token {hub.admin_token}"}
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.get(
            f"{hub.url}/hub/api/users",
            params={"state": "active", "limit": 1},
            headers={**headers, "Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        return r.json()["_pagination"]["total"]


async def run_real_hub(args) -> list[dict]:
    """200 idle servers on a real JupyterHub (+CHP) with a process-less spawner."""
    import secrets

    from harness import Hub

    n = args.real_hub
    workdir = Path(tempfile.mkdtemp(prefix="bench-culler-realhub-"))
    tokens = {"ours": secrets.token_hex(16), "upstream": secrets.token_hex(16)}
    hub = Hub(workdir / "hub", provider=None, authenticator=None)
    hub.append_config(
        REAL_HUB_CONFIG.format(
            hub_port=hub.hub_port,
            latency=args.latency,
            ours_token=tokens["ours"],
            up_token=tokens["upstream"],
        )
    )
    results = []
    try:
        hub.start()
        names = [f"bench-{i:04d}" for i in range(n)]
        for name in names:
            hub.api("POST", f"users/{name}")
        for kind in ("ours", "upstream"):
            await _start_servers(hub, names)
            await asyncio.sleep(args.real_timeout + 1.5)  # every server is now idle
            log_before = len(hub.log_text().splitlines())
            env = {
                **os.environ,
                "JUPYTERHUB_API_TOKEN": tokens[kind],
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
            for var in (
                "JUPYTERHUB_SERVICE_URL",
                "JUPYTERHUB_SERVICE_PREFIX",
                "JUPYTERHUB_CLIENT_ID",
            ):
                env.pop(var, None)
            sub_args = argparse.Namespace(**{**vars(args), "timeout": args.real_timeout})

            class _Url:
                api_url = f"{hub.url}/hub/api"

            cwd = tempfile.mkdtemp(prefix=f"bench-culler-realhub-{kind}-")
            t0 = time.monotonic()
            proc = spawn(culler_command(kind, _Url, sub_args), cwd, env, Path(cwd) / "culler.log")
            rss, left, done = None, n, False
            try:
                deadline = t0 + args.time_limit
                while time.monotonic() < deadline and proc.poll() is None:
                    await asyncio.sleep(0.2)
                    rss = peak_rss_mb(proc.pid) or rss
                    left = await _ready_count(hub)
                    if left == 0:
                        done = True
                        break
                elapsed = time.monotonic() - t0
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(10)
            lines = hub.log_text().splitlines()[log_before:]
            mine = [ln for ln in lines if f"(bench-{kind}@" in ln]
            results.append(
                {
                    "culler": kind,
                    "users": n,
                    "idle": n,
                    "ok": done,
                    "pass_seconds": round(elapsed, 3),
                    "api_calls": len(mine),
                    "gets": sum(" GET " in ln for ln in mine),
                    "deletes": sum(" DELETE " in ln for ln in mine),
                    "peak_deletes_in_flight": None,
                    "peak_rss_mb": round(rss, 1) if rss else None,
                    "servers_left_idle": left,
                    "hub": "real",
                }
            )
            print(f"# real hub {kind}: {elapsed:.2f} s, ok={done}", file=sys.stderr)
    finally:
        hub.stop()
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| users | idle | culler | pass (s) | API calls (GET/DELETE) | peak DELETEs in flight "
        "| peak RSS (MB) | all idle culled |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        hub = " (real hub)" if r.get("hub") == "real" else ""
        lines.append(
            f"| {r['users']}{hub} | {r['idle']} | {r['culler']} | {r['pass_seconds']:.2f} "
            f"| {r['api_calls']} ({r['gets']}/{r['deletes']}) | {r['peak_deletes_in_flight']} "
            f"| {r['peak_rss_mb']} | {'yes' if r['ok'] else 'NO'} |"
        )
    lines += [
        "",
        "| users | speed-up (upstream/ours) | API calls ratio (ours/upstream) | RSS ratio (ours/upstream) |",
        "|---:|---:|---:|---:|",
    ]
    by = {}
    for r in results:
        key = f"{r['users']} (real hub)" if r.get("hub") == "real" else r["users"]
        by.setdefault(key, {})[r["culler"]] = r
    for n, pair in by.items():
        if "ours" in pair and "upstream" in pair:
            o, u = pair["ours"], pair["upstream"]
            speed = u["pass_seconds"] / o["pass_seconds"] if o["pass_seconds"] else float("nan")
            calls = o["api_calls"] / u["api_calls"] if u["api_calls"] else float("nan")
            rss = (
                o["peak_rss_mb"] / u["peak_rss_mb"]
                if o["peak_rss_mb"] and u["peak_rss_mb"]
                else float("nan")
            )
            lines.append(f"| {n} | {speed:.1f}x | {calls:.2f} | {rss:.2f} |")
    return "\n".join(lines)


async def run_all(args) -> list[dict]:
    results = []
    if args.real_hub:
        results += await run_real_hub(args)
    for n in [int(x) for x in args.users.split(",") if x.strip()]:
        for kind in ("ours", "upstream"):
            r = await run_one(kind, n, args)
            print(f"# {kind} n={n}: {r.get('pass_seconds')} s, ok={r['ok']}", file=sys.stderr)
            results.append(r)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", default="1000,10000", help="comma-separated user counts")
    ap.add_argument("--idle-fraction", type=float, default=0.2)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per DELETE")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--page-size", type=int, default=0, help="--api-page-size (0: hub default)")
    ap.add_argument("--timeout", type=int, default=3600, help="culler idle timeout")
    ap.add_argument("--time-limit", type=float, default=900, help="max seconds per culler run")
    ap.add_argument("--quiet", type=float, default=1.0, help="quiet seconds that end a pass")
    ap.add_argument("--json", help="JSON results file (default: bench/results/culler.json)")
    ap.add_argument(
        "--real-hub",
        type=int,
        default=200,
        help="idle servers on a real JupyterHub (process-less spawner; 0 to skip)",
    )
    ap.add_argument("--real-timeout", type=int, default=5, help="culler timeout on the real hub")
    args = ap.parse_args(argv)

    results = asyncio.run(run_all(args))
    print(table(results))
    print()
    data = {"bench": "culler", "params": vars(args), "results": results}
    print(json.dumps(data, indent=1))
    out = Path(args.json) if args.json else REPO / "bench" / "results" / "culler.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(f"\n(JSON: {out})")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
