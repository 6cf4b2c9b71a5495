"""Benchmark: what the user-limit service costs a real hub, against JupyterHub's built-in
``active_server_limit``, in the same run.

**Real hub** (the main table): JupyterHub + configurable-http-proxy, a no-op spawner (its
"server" is one tiny HTTP server shared by all, so spawns cost the hub only its own work), the
same flags in every mode (``slow_spawn_timeout`` None, no ``concurrent_spawn_limit``), a fresh hub
per run, modes in alternating order, ``--runs`` runs each; medians and ratios to the anchor.

- ``builtin``: ``c.JupyterHub.active_server_limit = cap`` (the anchor);
- ``ours``: ``enable_user_limit(c, {"max_active_servers": cap})`` (admission at
  ``Spawner.oauth_client_allowed_scopes``, see docs/user-limit.md);
- ``ours-late``: the same service deciding in ``pre_spawn_hook`` (after the hub made the
  server's OAuth client, undone by ``User.stop()``): where the admission was before.

Scenarios: ``--cap`` spawns at once against a cap of ``--cap`` (no refusals), and ``--users``
at once (the rest queued: 429). Measured: wall time until every REST answer is in, p50 latency
of all answers and of the refusals, the hub's latency for others (``GET /hub/api/users?limit=1``
every ``--probe-ms``), the hub's CPU time, over-admissions (answers or active servers > cap).

**Fake hub** (secondary): the service alone, ``--clients`` concurrent ``POST api/admissions``.
Usage: ``python bench/bench_user_limit.py [--runs 5] [--skip-fake]`` as root.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import pct, report, use_harness  # noqa: E402

use_harness()
from fakehub import FakeHub  # noqa: E402
from harness import Hub, ensure_installed, free_port, wait_until  # noqa: E402

from jupyterhub_lab_ext.services.user_limit.client import ServiceClient  # noqa: E402

HOOK = "bench-hook-secret-0123456789abcdef0123456789"
MODES = ("builtin", "ours", "ours-late")
SCENARIOS = ("no refusals", "burst")
MODE_NAMES = {
    "builtin": "built-in active_server_limit (anchor)",
    "ours": "user-limit service",
    "ours-late": "user-limit deciding in pre_spawn_hook (before)",
}

NOOP_SPAWNER = """
from jupyterhub.spawner import Spawner

class NoopSpawner(Spawner):
    '''Starts nothing: every "server" is the benchmark's one tiny HTTP server.'''
    running = False

    async def start(self):
        self.running = True
        return {url!r}

    async def poll(self):
        return None if self.running else 0

    async def stop(self, now=False):
        self.running = False

c.JupyterHub.spawner_class = NoopSpawner
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": None}}
c.JupyterHub.concurrent_spawn_limit = 0
"""


class _Answer(http.server.BaseHTTPRequestHandler):  # the no-op servers' one server
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class _Servers(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # all spawns check it at once: no refused connection, no backoff
    daemon_threads = True


def hub_config(mode: str, cap: int, server_url: str) -> str:
    text = NOOP_SPAWNER.format(url=server_url)
    if mode == "builtin":
        return text + f"c.JupyterHub.active_server_limit = {cap}\n"
    settings = {"max_active_servers": cap, "start_queued_servers": False, "reconcile_interval": 0}
    text += (
        "from jupyterhub_lab_ext.services.user_limit.hubconfig import HookOptions, "
        "enable_user_limit\n"
        f"enable_user_limit(c, {settings!r}, url='http://127.0.0.1:{free_port()}', "
        f"hook=HookOptions(token={HOOK!r}))\n"
    )
    if mode == "ours-late":
        text += "c.Spawner.oauth_client_allowed_scopes = []  # the pre_spawn_hook decides\n"
    return text


class Probe:
    """``GET /hub/api/users?limit=1`` every ``interval`` s in a thread: the hub as others see it."""

    def __init__(self, hub: Hub, interval: float):
        self.hub, self.interval = hub, interval
        self.samples: list[tuple[float, float]] = []  # (start time, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        headers = {"Authorization": f"token {self.hub.admin_token}"}
        with httpx.Client(timeout=30, headers=headers) as c:
            for _ in range(100_000):
                if self._stop.is_set():
                    return
                t0 = time.perf_counter()
                c.get(f"{self.hub.url}/hub/api/users", params={"limit": 1})
                self.samples.append((t0, time.perf_counter() - t0))
                self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def between(self, start: float, end: float) -> list[float]:
        return [1000 * s for t, s in self.samples if start <= t <= end]


def hub_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fire(hub: Hub, names: list[str]) -> dict[str, tuple[int, float]]:
    """Every spawn at once; (status, seconds) per user."""
    results: dict[str, tuple[int, float]] = {}
    headers = {"Authorization": f"token {hub.admin_token}"}
    limits = httpx.Limits(max_connections=len(names))
    async with httpx.AsyncClient(timeout=150, limits=limits, headers=headers) as c:

        async def one(name):
            t0 = time.perf_counter()
            r = await c.post(f"{hub.url}/hub/api/users/{name}/server", json={})
            results[name] = (r.status_code, time.perf_counter() - t0)

        await asyncio.gather(*(one(n) for n in names))
    return results


def start_hub(mode: str, cap: int, users: int, workdir: Path, server_url: str) -> Hub:
    hub = Hub(workdir, config=hub_config(mode, cap, server_url), authenticator=None)
    hub.start()
    if mode != "builtin":
        wait_until(
            lambda: (
                httpx.get(f"{hub.url}/services/user-limit/health", timeout=2).status_code == 200
            ),
            timeout=60,
            what="user-limit service",
        )
    names = [f"b{i:03d}" for i in range(users)]
    try:
        r = hub.api("POST", "users", json={"usernames": names})
    except httpx.TransportError as e:
        hub.stop()
        raise RuntimeError(f"{mode}: the hub went away ({e}):\n{hub.log_tail(60)}") from None
    assert r.status_code == 201, r.text
    return hub


def run_once(mode: str, cap: int, users: int, workdir: Path, args, server_url: str) -> dict:
    hub = start_hub(mode, cap, users, workdir, server_url)
    try:
        names = [f"b{i:03d}" for i in range(users)]
        with Probe(hub, args.probe_ms / 1000) as probe:
            time.sleep(args.idle_s)  # the hub's idle latency first
            cpu0, t0 = hub_cpu(hub.process.pid), time.perf_counter()
            results = asyncio.run(fire(hub, names))
            wall, cpu = time.perf_counter() - t0, hub_cpu(hub.process.pid) - cpu0
        active = hub.api("GET", "users", params={"state": "active", "limit": 200}).json()
        statuses: dict[int, int] = {}
        for s, _ in results.values():
            statuses[s] = statuses.get(s, 0) + 1
        admitted = sum(n for s, n in statuses.items() if s in (201, 202))
        served = sum(len(u["servers"]) for u in active)
        return {
            "mode": mode,
            "statuses": statuses,
            "wall_s": wall,
            "p50_ms": pct([1000 * s for _, s in results.values()], 50),
            "refused_p50_ms": pct([1000 * s for c, s in results.values() if c == 429], 50),
            "hub_cpu_s": cpu,
            "over_admitted": max(0, admitted - cap, served - cap),
            "probe_idle_ms": probe.between(t0 - args.idle_s, t0),
            "probe_burst_ms": probe.between(t0, t0 + wall),
        }
    finally:
        hub.stop()


def aggregate(runs: list[dict]) -> dict:
    def med(key):
        values = [r[key] for r in runs if r[key] == r[key]]  # no NaN
        return statistics.median(values) if values else float("nan")

    idle = [x for r in runs for x in r["probe_idle_ms"]]
    burst = [x for r in runs for x in r["probe_burst_ms"]]
    return {
        "wall_s": med("wall_s"),
        "p50_ms": med("p50_ms"),
        "refused_p50_ms": med("refused_p50_ms"),
        "hub_cpu_s": med("hub_cpu_s"),
        "over_admitted_max": max(r["over_admitted"] for r in runs),
        "probe_idle_p50_ms": pct(idle, 50),
        "probe_burst_p50_ms": pct(burst, 50),
        "probe_burst_p99_ms": pct(burst, 99),
        "statuses": [r["statuses"] for r in runs],
    }


def real_hub(args, work: Path) -> dict:
    ensure_installed()  # the hub imports the installed package
    server = _Servers(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server_url = f"http://127.0.0.1:{server.server_address[1]}"
    out: dict = {}
    try:
        for label, users in zip(SCENARIOS, (args.cap, args.users), strict=True):
            runs: dict[str, list] = {m: [] for m in MODES}
            for i in range(args.runs):
                for mode in MODES if i % 2 == 0 else MODES[::-1]:
                    wd = work / f"{label}-{mode}-{i}".replace(" ", "-")
                    runs[mode].append(run_once(mode, args.cap, users, wd, args, server_url))
            out[label] = {
                "users": users,
                "cap": args.cap,
                "modes": {m: aggregate(rs) for m, rs in runs.items()},
                "runs": runs,
            }
    finally:
        server.shutdown()
    return out


def real_hub_table(args, data: dict) -> None:
    quiet, burst = data["no refusals"]["modes"], data["burst"]["modes"]
    rows = []

    def row(what, scenario, key, unit=""):
        base = scenario["builtin"][key]
        cells = [f"{scenario[m][key]:.3g}{unit}" for m in MODES]
        ratios = [f"{scenario[m][key] / base:.2f}x" if base else "n/a" for m in MODES[1:]]
        rows.append([what, *cells, *ratios])

    row(
        f"{args.cap} spawns, cap {args.cap} (no refusals): wall until all answered",
        quiet,
        "wall_s",
        " s",
    )
    row(
        f"{args.users} spawns at once, cap {args.cap}: wall until all answered",
        burst,
        "wall_s",
        " s",
    )
    row(f"{args.users} at once: p50 latency (all answers)", burst, "p50_ms", " ms")
    row(f"{args.users} at once: p50 latency of the refusals (429)", burst, "refused_p50_ms", " ms")
    row(f"{args.users} at once: hub CPU time", burst, "hub_cpu_s", " s")
    row("hub latency for others during the burst, p50", burst, "probe_burst_p50_ms", " ms")
    row("hub latency for others during the burst, p99", burst, "probe_burst_p99_ms", " ms")
    row("hub latency for others when idle, p50", burst, "probe_idle_p50_ms", " ms")
    rows.append(
        ["over-admissions (max over runs)"]
        + [str(max(data[s]["modes"][m]["over_admitted_max"] for s in SCENARIOS)) for m in MODES]
        + ["", ""]
    )
    report(
        "user_limit",
        f"User limit on a real hub (JupyterHub + CHP, no-op spawner), median of {args.runs} runs "
        f"per mode, alternating, fresh hub per run; load average at start {data['load_start']}, "
        f"at end {data['load_end']}",
        ["what", *(MODE_NAMES[m] for m in MODES), "ratio ours", "ratio before"],
        rows,
        data,
    )  # fmt: skip


async def decision_latency(args, workdir: Path, log) -> dict:
    """The service alone against a fake Hub API: concurrent admission requests (secondary)."""
    hub = FakeHub()
    await hub.start()
    port = free_port()
    settings = {"max_active_servers": args.clients * args.rounds // 2, "reconcile_interval": 3600}
    settings["db_url"] = f"sqlite:///{workdir}/bench-user-limit.sqlite"
    env = dict(
        os.environ,
        JUPYTERHUB_API_URL=hub.api_url,
        JUPYTERHUB_API_TOKEN=hub.token,
        JUPYTERHUB_SERVICE_NAME="user-limit",
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_USER_LIMIT_HOOK_TOKEN=HOOK,
        JUPYTERHUB_USER_LIMIT_SETTINGS=json.dumps(settings),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jupyterhub_lab_ext.services.user_limit", env=env, cwd=workdir,
        stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/services/user-limit"
    client = ServiceClient(base + "/api/", HOOK, timeout=60, retries=0, max_idle=args.clients)
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(timeout=2) as probe:
            for _ in range(300):
                try:
                    if (await probe.get(base + "/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

        async def one(user: str):
            t0 = time.perf_counter()
            status, doc = await client.request("POST", "admissions", {"user": user})
            latencies.append(time.perf_counter() - t0)
            assert status == 200, doc

        await asyncio.gather(*(one(f"warm-{i}") for i in range(args.clients)))
        latencies.clear()
        for rnd in range(args.rounds):
            await asyncio.gather(*(one(f"r{rnd}-u{i}") for i in range(args.clients)))
    finally:
        await client.aclose()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
        await hub.stop()
    ms = [1000 * x for x in latencies]
    return {"requests": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per mode and scenario (>= 1)")
    ap.add_argument("--users", type=int, default=50, help="spawns at once in the burst")
    ap.add_argument("--cap", type=int, default=10, help="server cap")
    ap.add_argument("--probe-ms", type=float, default=50, help="hub latency probe interval")
    ap.add_argument("--idle-s", type=float, default=2, help="idle probing before each burst")
    ap.add_argument("--clients", type=int, default=100, help="fake hub: concurrent requests")
    ap.add_argument("--rounds", type=int, default=5, help="fake hub: rounds")
    ap.add_argument("--skip-fake", action="store_true", help="only the real-hub part")
    args = ap.parse_args()
    if not (1 <= args.runs <= 20 and 1 <= args.cap <= args.users <= 200 and args.probe_ms >= 10):
        ap.error("need 1 <= runs <= 20, 1 <= cap <= users <= 200, probe-ms >= 10")
    if os.geteuid() != 0:
        ap.error("run as root (the hub's test setup expects it)")
    work = Path(tempfile.mkdtemp(prefix="jhle-bench-ul-"))
    work.chmod(0o755)
    try:
        data = {"args": vars(args), "load_start": os.getloadavg()[0]}
        data.update(real_hub(args, work))
        data["load_end"] = os.getloadavg()[0]
        real_hub_table(args, data)
        if not args.skip_fake:
            with open(work / "service.log", "wb") as log:
                dec = asyncio.run(decision_latency(args, work, log))
            report(
                "user_limit_fake_hub",
                "Secondary, fake hub: the service alone, concurrent admission requests",
                ["requests", "concurrency", "p50 ms", "p99 ms"],
                [[dec["requests"], args.clients, dec["p50_ms"], dec["p99_ms"]]],
                dec,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
