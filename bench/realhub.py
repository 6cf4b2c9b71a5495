"""Real-hub helpers for benchmarks: a fresh JupyterHub + CHP with process-less servers, many
users, the latency a person sees while a service works, and the hub's request log.

- :func:`fresh_hub`: a started hub (tests/e2e/harness.py ``Hub``) whose spawner runs nothing
  (tests/support/fakespawner.py: start at once, stop in ``stop_seconds``), with extra services
  and their tokens and scopes;
- :func:`add_users`, :func:`start_servers`, :func:`report_activity`: set the scene over REST;
- :class:`LatencyProbe`: ``GET /hub/api/users?limit=1`` every 200 ms through the proxy with a
  token of its own, timestamped (wall clock), bounded in count and time;
- :class:`HubLog`: the hub's access log lines (time, status, method, path, client, duration);
- :func:`start_service`, :func:`stop_service`: a service process with its token, in a session
  of its own, stopped by its process group.

Everything binds to 127.0.0.1 on free ports; each hub is stopped by its process group.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from _common import TESTS, pct, use_harness

use_harness()
from harness import Hub  # noqa: E402

SUPPORT = TESTS / "support"
REPO = TESTS.parent

HUB_CONFIG = """
import sys
sys.path.insert(0, {support!r})
from fakespawner import FakeSpawner

c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = FakeSpawner
c.FakeSpawner.stop_seconds = {stop_seconds!r}
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.last_activity_interval = 3600
"""


@dataclass
class Service:
    name: str
    scopes: list[str]
    token: str = ""


GC_LOG_CONFIG = """
import gc, time
_gc_log, _gc_t0 = open({path!r}, "a", buffering=1), {{}}
def _gc_timer(phase, info):
    if phase == "start":
        _gc_t0["t"] = time.perf_counter()
    elif info["generation"] == 2 or time.perf_counter() - _gc_t0["t"] > 0.002:
        _gc_log.write("%.6f %d %.6f %d\\n" % (time.time(), info["generation"],
                      time.perf_counter() - _gc_t0.get("t", time.perf_counter()), info["collected"]))
gc.callbacks.append(_gc_timer)
"""


def fresh_hub(
    workdir: Path, services: list[Service], stop_seconds: float = 0.05, gc_log: Path | None = None
) -> Hub:
    """A started hub in ``workdir`` (new database) with ``services`` (tokens filled in).

    ``gc_log``: the hub writes each of its garbage collections there (wall-clock end, generation,
    seconds, objects collected), for the benchmarks' debug mode."""
    hub = Hub(workdir, provider=None, authenticator=None)
    lines = [HUB_CONFIG.format(support=str(SUPPORT), stop_seconds=stop_seconds)]
    if gc_log is not None:
        lines.append(GC_LOG_CONFIG.format(path=str(gc_log)))
    for svc in services:
        svc.token = svc.token or secrets.token_hex(24)
        lines.append(
            f"c.JupyterHub.services.append({{'name': {svc.name!r}, 'api_token': {svc.token!r}}})\n"
            f"c.JupyterHub.load_roles.append({{'name': '{svc.name}-role', "
            f"'services': [{svc.name!r}], 'scopes': {svc.scopes!r}}})"
        )
    hub.append_config("\n".join(lines))
    hub.start()
    return hub


def _client(hub: Hub, timeout: float = 120) -> httpx.AsyncClient:
    headers = {"Authorization": f"token {hub.admin_token}"}
    return httpx.AsyncClient(base_url=f"{hub.url}/hub/api/", headers=headers, timeout=timeout)


async def _each(hub: Hub, items, call, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with _client(hub) as client:

        async def one(item):
            async with sem:
                await call(client, item)

        await asyncio.gather(*(one(i) for i in items))


async def add_users(hub: Hub, names: list[str], chunk: int = 200) -> None:
    async with _client(hub) as client:
        for i in range(0, len(names), chunk):
            r = await client.post("users", json={"usernames": names[i : i + chunk]})
            if r.status_code != 201:
                raise RuntimeError(f"add users: {r.status_code} {r.text[:200]}")


async def start_servers(hub: Hub, names: list[str], concurrency: int = 10) -> None:
    async def start(client, name):
        r = await client.post(f"users/{name}/server", json={})
        if r.status_code not in (201, 202):
            raise RuntimeError(f"spawn {name}: {r.status_code} {r.text[:200]}")

    await _each(hub, names, start, concurrency)


async def report_activity(hub: Hub, names: list[str], concurrency: int = 10) -> None:
    """Report the servers of ``names`` active until 30 minutes from now (as a server would)."""
    soon = (datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat()
    body = {"servers": {"": {"last_activity": soon}}}

    async def post(client, name):
        r = await client.post(f"users/{name}/activity", json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"activity {name}: {r.status_code} {r.text[:200]}")

    await _each(hub, names, post, concurrency)


async def count_running(hub: Hub) -> int:
    async with _client(hub, timeout=60) as client:
        r = await client.get(
            "users",
            params={"state": "active", "limit": 1},
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        return r.json()["_pagination"]["total"]


class LatencyProbe:
    """``GET /hub/api/users?limit=1`` through the proxy every ``interval`` seconds.

    ``samples`` holds ``(wall-clock start, seconds)``; a failed request counts with its time.
    Stops after ``max_seconds`` or ``stop()``.
    """

    def __init__(self, hub: Hub, token: str, interval: float = 0.2, max_seconds: float = 900):
        self.url = f"{hub.url}/hub/api/users"
        self.token = token
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        headers = {"Authorization": f"token {self.token}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            deadline = time.monotonic() + self.max_seconds
            for _ in range(int(self.max_seconds / self.interval) + 1):
                if time.monotonic() > deadline:
                    return
                wall, t0 = time.time(), time.perf_counter()
                try:
                    r = await client.get(self.url, params={"limit": 1})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                seconds = time.perf_counter() - t0
                self.errors += not ok
                self.samples.append((wall, seconds))
                await asyncio.sleep(max(0.0, self.interval - seconds))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def between(self, start: float, end: float) -> list[float]:
        """Latencies (seconds) of the probes sent between two wall-clock times."""
        return [s for t, s in self.samples if start <= t <= end]


def latency_ms(samples: list[float]) -> dict:
    """p50/p99 in milliseconds and the sample count."""
    return {
        "p50": round(1000 * pct(samples, 50), 2) if samples else None,
        "p99": round(1000 * pct(samples, 99), 2) if samples else None,
        "n": len(samples),
    }


_LINE = re.compile(
    r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) JupyterHub log:\d+\] (\d{3}) (\w+) (\S+)"
    r" \(([^@)]*)@[^)]*\) ([\d.]+)ms"
)


@dataclass
class Request:
    end: float  # wall clock, when the hub logged it
    status: int
    method: str
    path: str
    client: str  # user or service name
    ms: float

    @property
    def start(self) -> float:
        return self.end - self.ms / 1000


class HubLog:
    """The access log of a :class:`Hub` (``hub.log``), parsed from an offset on, incrementally
    (a benchmark polls it while it probes the hub: re-reading it all would hold up its probe)."""

    def __init__(self, hub: Hub):
        self.path = hub.workdir / "hub.log"
        self.offset = 0
        self._parsed: list[Request] = []

    def mark(self) -> None:
        """Only lines written from now on count."""
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self._parsed = []

    def requests(self, client: str | None = None) -> list[Request]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for the next call
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            self._parsed.append(
                Request(
                    when, int(m.group(2)), m.group(3), m.group(4), m.group(5), float(m.group(6))
                )
            )
        return [r for r in self._parsed if client is None or r.client == client]


def start_service(cmd: list[str], cwd: str, token: str, log_path: Path) -> subprocess.Popen:
    """Run a hub service's command with ``token`` (and none of our ``JUPYTERHUB_*``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["JUPYTERHUB_API_TOKEN"] = token
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_service(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process group, SIGKILL after 15 s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
