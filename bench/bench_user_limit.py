"""Benchmark: the user-limit service, and a spawn burst against a cap, ours vs JupyterHub's
built-in ``active_server_limit``, in the same run.

1. **Decision latency**: the service runs as a subprocess (SQLite store, a fake Hub API in this
   process for its reconciliation); ``--clients`` concurrent ``POST api/admissions`` (the hook's
   call) per round, ``--rounds`` rounds; client-side latency p50/p99.
2. **Spawn burst**: a real JupyterHub + proxy with ``SimpleLocalProcessSpawner`` starting a tiny
   real HTTP server per user (so spawns are cheap and the numbers show the admission cost, not
   JupyterLab's start-up). ``--users`` users ask for a server at the same moment against a cap of
   ``--cap``. Anchor: ``c.JupyterHub.active_server_limit = cap``. Ours: ``enable_user_limit(c,
   max_active_servers=cap)``. Measured: over-admissions (peak of servers the hub reports active,
   polled every 20 ms, minus the cap; and admitted answers minus the cap), the time spent in our
   ``pre_spawn_hook`` per spawn (added spawn latency), and the wall time from the burst until
   every admitted server is ready (ratio to the anchor). A third mode, a plain counter in the
   hub's ``pre_spawn_hook`` (no service, no I/O), shows what refusing inside ``user.spawn()``
   costs the hub by itself. Rounds alternate the order of the modes.

Usage::

    python bench/bench_user_limit.py                 # 200 clients x 5 rounds; 40 users, cap 10, 3 rounds
    python bench/bench_user_limit.py --users 60 --cap 20 --burst-rounds 5

Run as root (the hub runs servers as the hub user). Prints markdown tables + JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests" / "support"))

import httpx  # noqa: E402
from _common import pct, report, use_harness  # noqa: E402
from fakehub import FakeHub  # noqa: E402
from ports import free_port  # noqa: E402

from jupyterhub_lab_ext.services.user_limit.client import ServiceClient  # noqa: E402

HOOK = "bench-hook-secret-0123456789abcdef0123456789"
MODES = ("builtin", "hook-floor", "ours")
MODE_NAMES = {
    "builtin": "built-in active_server_limit (anchor)",
    "hook-floor": "in-hub counter in pre_spawn_hook (floor of any hook)",
    "ours": "user-limit service",
}

TINY_SERVER = r"""
import http.server, os, urllib.parse
url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((url.hostname, url.port), H).serve_forever()
"""


# ----------------------------------------------------------------------------- 1: decisions
def start_service(env: dict, workdir: Path):
    log = open(workdir / "service.log", "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_lab_ext.services.user_limit"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return log, proc


ADMISSION_LOG = re.compile(r"POST /services/user-limit/api/admissions ([\d.]+)ms")


async def decision_latency(args, workdir: Path) -> dict:
    hub = FakeHub()
    await hub.start()
    port = free_port()
    settings = {
        "max_active_servers": args.clients * args.rounds // 2,
        "reconcile_interval": 3600,
        "db_url": f"sqlite:///{workdir}/bench-user-limit.sqlite",
    }
    env = dict(
        os.environ,
        JUPYTERHUB_API_URL=hub.api_url,
        JUPYTERHUB_API_TOKEN=hub.token,
        JUPYTERHUB_SERVICE_NAME="user-limit",
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_USER_LIMIT_HOOK_TOKEN=HOOK,
        JUPYTERHUB_USER_LIMIT_SETTINGS=json.dumps(settings),
    )
    log, proc = start_service(env, workdir)
    base = f"http://127.0.0.1:{port}/services/user-limit"
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    client = ServiceClient(base + "/api/", HOOK, timeout=60, retries=0, max_idle=args.clients)
    try:
        async with httpx.AsyncClient(timeout=5) as probe:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if (await probe.get(base + "/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(
                    "service did not start:\n" + (workdir / "service.log").read_text()
                )

        async def one(user: str):
            t0 = time.perf_counter()
            status, doc = await client.request(
                "POST", "admissions", {"user": user, "groups": ["bench"]}
            )
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"admission answered {status}: {doc}")
            outcomes[doc["outcome"]] = outcomes.get(doc["outcome"], 0) + 1

        # warm up the connections, then measure
        async def warm(i):
            await client.request("POST", "admissions", {"user": f"warm-{i}", "kind": "seat"})

        await asyncio.gather(*(warm(i) for i in range(args.clients)))
        latencies.clear()
        outcomes.clear()
        t_all = time.perf_counter()
        for rnd in range(args.rounds):
            await asyncio.gather(*(one(f"r{rnd}-u{i}") for i in range(args.clients)))
        wall = time.perf_counter() - t_all
    finally:
        await client.aclose()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        await hub.stop()
    ms = [1000 * x for x in latencies]
    # the service's own time per request (its request log), without the client-side queueing
    served = [float(m) for m in ADMISSION_LOG.findall((workdir / "service.log").read_text())]
    served = served[args.clients :]  # drop the warm-up
    return {
        "service_p50_ms": pct(served, 50),
        "service_p99_ms": pct(served, 99),
        "requests": len(ms),
        "concurrency": args.clients,
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms),
        "throughput_per_s": len(ms) / wall,
        "outcomes": outcomes,
    }


# ----------------------------------------------------------------------------- 2: spawn burst
def hub_config(mode: str, cap: int, homes: Path, timing_file: Path) -> str:
    lines = [
        "import sys, time, json",
        "c.JupyterHub.authenticator_class = 'null'",
        "c.JupyterHub.spawner_class = 'jupyterhub.spawner.SimpleLocalProcessSpawner'",
        f"c.SimpleLocalProcessSpawner.home_dir_template = '{homes}/{{username}}'",
        f"c.Spawner.cmd = [sys.executable, '-c', {TINY_SERVER!r}]",
        "c.Spawner.start_timeout = 120",
        "c.Spawner.http_timeout = 120",
        # the API answers with the spawn's final outcome, in both modes
        "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': None}",
        "c.JupyterHub.concurrent_spawn_limit = 0",
    ]
    if mode == "builtin":
        lines.append(f"c.JupyterHub.active_server_limit = {cap}")
    elif mode == "hook-floor":
        # no service: a counter in the hub's own pre_spawn_hook, refusing with the same
        # exception; what any pre_spawn_hook-based limit costs the hub at the least
        lines += [
            "from jupyterhub.spawner import SpawnException",
            "_admitted = set()",
            "def _floor(spawner):",
            f"    if spawner.user.name not in _admitted and len(_admitted) >= {cap}:",
            "        raise SpawnException('full', reason='capacity', status_code=429)",
            "    _admitted.add(spawner.user.name)",
            "c.Spawner.pre_spawn_hook = _floor",
        ]
    else:
        port = free_port()
        lines += [
            "from jupyterhub_lab_ext.services.user_limit.hook import enable_user_limit",
            f"enable_user_limit(c, url='http://127.0.0.1:{port}', max_active_servers={cap}, "
            "start_queued_servers=False, reconcile_interval=3600)",
            # measure the time our hook adds to each spawn
            "_hook = c.Spawner.pre_spawn_hook",
            "_times = []",
            "async def _timed(spawner):",
            "    t0 = time.perf_counter()",
            "    try:",
            "        await _hook(spawner)",
            "    finally:",
            "        _times.append(time.perf_counter() - t0)",
            f"        open({str(timing_file)!r}, 'w').write(json.dumps(_times))",
            "c.Spawner.pre_spawn_hook = _timed",
        ]
    return "\n".join(lines) + "\n"


def burst_round(users: int, cap: int, mode: str, workdir: Path) -> dict:
    use_harness()
    from harness import Hub, ensure_installed, wait_until

    ensure_installed()  # the hub imports the installed package

    homes = workdir / "homes"
    homes.mkdir(parents=True, exist_ok=True)
    timing_file = workdir / "hook-times.json"
    hub = Hub(workdir / "hub", config=hub_config(mode, cap, homes, timing_file), authenticator=None)
    try:
        hub.start()
        if mode == "ours":
            wait_until(
                lambda: (
                    httpx.get(f"{hub.url}/services/user-limit/health", timeout=2).status_code == 200
                ),
                timeout=30,
                what="user-limit service",
            )
        names = [f"b{i:03d}" for i in range(users)]
        r = hub.api("POST", "users", json={"usernames": names})
        assert r.status_code == 201, r.text
        peak = [0]
        stop = threading.Event()

        def poll():
            with httpx.Client(timeout=10) as c:
                while not stop.is_set():
                    # servers that run (ready), not refused spawns that are briefly pending
                    resp = c.get(
                        f"{hub.url}/hub/api/users",
                        params={"state": "ready", "limit": 200},
                        headers={"Authorization": f"token {hub.admin_token}"},
                    )
                    if resp.status_code == 200:
                        n = sum(
                            1 for u in resp.json() for s in u["servers"].values() if s.get("ready")
                        )
                        peak[0] = max(peak[0], n)
                    stop.wait(0.02)

        results: dict[str, tuple[int, float]] = {}

        async def fire():
            async with httpx.AsyncClient(
                timeout=150, limits=httpx.Limits(max_connections=users)
            ) as c:

                async def one(name):
                    t0 = time.perf_counter()
                    resp = await c.post(
                        f"{hub.url}/hub/api/users/{name}/server",
                        json={},
                        headers={"Authorization": f"token {hub.admin_token}"},
                    )
                    results[name] = (resp.status_code, time.perf_counter() - t0)

                await asyncio.gather(*(one(n) for n in names))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        t0 = time.perf_counter()
        asyncio.run(fire())
        admitted = [n for n, (s, _) in results.items() if s in (201, 202)]

        def all_ready():
            resp = hub.api("GET", "users", params={"state": "ready", "limit": 200})
            ready = {u["name"] for u in resp.json()}
            return set(admitted) <= ready

        wait_until(all_ready, timeout=120, interval=0.02, what="admitted servers ready")
        wall = time.perf_counter() - t0
        time.sleep(0.5)  # a last look for late over-admissions
        stop.set()
        poller.join(10)
        statuses: dict[int, int] = {}
        for s, _ in results.values():
            statuses[s] = statuses.get(s, 0) + 1
        hook_ms = []
        if mode == "ours" and timing_file.exists():
            hook_ms = [1000 * x for x in json.loads(timing_file.read_text())]
        admitted_ms = [1000 * results[n][1] for n in admitted]
        # the service's own time per admission request (from its request log in the hub log)
        service_ms = [
            float(m)
            for m in re.findall(
                r"POST /services/user-limit/api/admissions ([\d.]+)ms", hub.log_text()
            )
        ]
        return {
            "mode": mode,
            "statuses": statuses,
            "admitted": len(admitted),
            "over_admitted_answers": max(0, len(admitted) - cap),
            "peak_active": peak[0],
            "over_admission_peak": max(0, peak[0] - cap),
            "wall_s": wall,
            "admitted_request_p50_ms": pct(admitted_ms, 50),
            "hook_ms": hook_ms,
            "service_ms": service_ms,
        }
    finally:
        hub.stop()
        shutil.rmtree(homes, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=200, help="concurrent admission requests")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of --clients requests")
    ap.add_argument("--users", type=int, default=40, help="users in the spawn burst")
    ap.add_argument("--cap", type=int, default=10, help="server cap in the spawn burst")
    ap.add_argument("--burst-rounds", type=int, default=3, help="rounds per mode (alternating)")
    ap.add_argument("--skip-burst", action="store_true", help="only the decision latency part")
    args = ap.parse_args()
    if (
        args.rounds < 1
        or args.clients < 1
        or args.burst_rounds < 1
        or args.rounds * args.clients > 100_000
    ):
        ap.error("rounds, clients and burst-rounds must be >= 1 (and rounds*clients <= 100000)")

    work = Path(tempfile.mkdtemp(prefix="jhle-bench-ul-"))
    work.chmod(0o755)
    data: dict = {"args": vars(args)}
    try:
        dec = asyncio.run(decision_latency(args, work))
        data["decisions"] = dec
        report(
            "user_limit_decisions",
            f"User-limit admission decisions: {dec['concurrency']} concurrent requests x {args.rounds} rounds",
            ["requests", "client p50 ms", "client p99 ms", "service p50 ms", "service p99 ms",
             "decisions/s", "admitted", "queued"],
            [[
                dec["requests"], dec["p50_ms"], dec["p99_ms"], dec["service_p50_ms"],
                dec["service_p99_ms"], dec["throughput_per_s"],
                dec["outcomes"].get("admitted", 0), dec["outcomes"].get("queued", 0),
            ]],
            data,
        )  # fmt: skip
        if args.skip_burst:
            return 0
        if os.geteuid() != 0:
            print("spawn burst skipped: run as root", file=sys.stderr)
            return 1
        scenarios = [("burst", args.users, args.cap), ("no refusals", args.cap, args.cap)]
        rows = []
        data["burst"] = {}
        for label, users, cap in scenarios:
            rounds = []
            for i in range(args.burst_rounds):
                order = MODES if i % 2 == 0 else MODES[::-1]
                for mode in order:
                    rounds.append(
                        burst_round(
                            users, cap, mode, work / f"{label}-{mode}-{i}".replace(" ", "-")
                        )
                    )
            agg = {}
            for mode in MODES:
                rs = [r for r in rounds if r["mode"] == mode]
                hook = [x for r in rs for x in r["hook_ms"]]
                service = [x for r in rs for x in r["service_ms"]]
                walls = sorted(r["wall_s"] for r in rs)
                agg[mode] = {
                    "over_admission_max": max(
                        max(r["over_admission_peak"], r["over_admitted_answers"]) for r in rs
                    ),
                    "admitted": [r["admitted"] for r in rs],
                    "wall_median_s": walls[len(walls) // 2],
                    "hook_p50_ms": pct(hook, 50) if hook else 0.0,
                    "hook_p99_ms": pct(hook, 99) if hook else 0.0,
                    "service_p50_ms": pct(service, 50) if service else 0.0,
                    "service_p99_ms": pct(service, 99) if service else 0.0,
                }
            base = agg["builtin"]["wall_median_s"]
            ratios = {mode: agg[mode]["wall_median_s"] / base for mode in MODES}
            data["burst"][label] = dict(agg, users=users, cap=cap, rounds=rounds, wall_ratio=ratios)
            for mode in MODES:
                a = agg[mode]
                rows.append([
                    f"{label}: {users} users, cap {cap}", MODE_NAMES[mode],
                    "/".join(map(str, a["admitted"])), a["over_admission_max"], a["hook_p50_ms"],
                    a["hook_p99_ms"], a["service_p99_ms"], a["wall_median_s"], ratios[mode],
                ])  # fmt: skip
        report(
            "user_limit",
            f"Spawn bursts (all requests at once), {args.burst_rounds} rounds per mode, alternating",
            ["scenario", "admission", "admitted per round", "over-admissions (max)",
             "hook p50 ms", "hook p99 ms", "service p99 ms", "wall s (median)", "wall ratio"],
            rows,
            data,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
