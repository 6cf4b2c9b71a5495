"""Where a swarm service's server runs: its current task, that task's node, the node's address.

With host networking a user's server listens on the network of the node where swarm placed its
task, so the hub and the proxy must reach it at that node's address, and the server must listen
on an address that the hub can reach. These are pure functions over the Docker Engine API's
documents (``GET /tasks``, ``GET /nodes/{id}``); the spawner (spawner/docker.py) fetches them.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

__all__ = ["current_task", "ended_within", "listen_ip", "node_address", "task_alive"]

#: desired states of a task that swarm means to run (a rescheduled task is prepared, desired
#: ``ready``, while the one it replaces stops; then its desired state becomes ``running``)
WANTED = frozenset({"ready", "running"})
#: the states of a task on its way to running, and running itself
ALIVE_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
)


def _age(task: dict) -> tuple[str, int]:
    # newest = created last (a replaced task's version keeps growing as its status changes)
    return (task.get("CreatedAt", ""), task.get("Version", {}).get("Index", 0))


def current_task(tasks: list[dict]) -> dict | None:
    """The task that stands for the service now, among all the service's tasks.

    Swarm keeps the tasks it replaced (after a restart or a reschedule, with desired state
    ``shutdown``), so this is the newest task that swarm means to run (desired state ``running``,
    or ``ready`` while it replaces another), preferring one that runs; with none, the newest task
    of all (its status says why the service is down).
    """
    if not tasks:
        return None
    wanted = [t for t in tasks if t.get("DesiredState") in WANTED]
    running = [t for t in wanted if t.get("Status", {}).get("State") == "running"]
    return max(running or wanted or tasks, key=_age)


def task_alive(task: dict) -> bool:
    """Whether the server of this (current) task runs or is about to: swarm means it to run and
    it has not ended (a rescheduled task passes through ``assigned`` ... ``starting``)."""
    state = task.get("Status", {}).get("State")
    return task.get("DesiredState") in WANTED and state in ALIVE_STATES


def _timestamp(text: str) -> datetime | None:
    """An engine timestamp (RFC 3339 with nanoseconds, ``...43.402255892Z``) as a datetime."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text or "").replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def ended_within(task: dict, seconds: float, now: datetime) -> bool:
    """Whether ``task`` ended less than ``seconds`` before ``now``: swarm's restart policy may
    still replace it (the replacement appears a moment after the end)."""
    if task_alive(task):
        return False
    ended = _timestamp(task.get("Status", {}).get("Timestamp", ""))
    return ended is not None and (now - ended).total_seconds() < seconds


def _is_unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return not address


def node_address(node: dict) -> str | None:
    """The address that a node is reached at: ``Status.Addr``, or for a manager that reports
    ``0.0.0.0`` there (some engine versions do), the host part of ``ManagerStatus.Addr``."""
    address = node.get("Status", {}).get("Addr") or ""
    if not _is_unspecified(address):
        return address
    manager = node.get("ManagerStatus", {}).get("Addr") or ""
    host = manager.rsplit(":", 1)[0].strip("[]") if ":" in manager else manager
    return None if _is_unspecified(host) else host


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def listen_ip(configured: str, nodes: list[dict]) -> str:
    """The address a server listens on in its node's network.

    ``configured`` (the spawner's ``ip``) stays, except that a loopback address cannot be reached
    from the hub on a swarm with a node that is not on loopback: then the server listens on every
    address of its node (``0.0.0.0``), since which node it lands on is known only after it was
    placed. A one-node swarm on 127.0.0.1 keeps 127.0.0.1.
    """
    if not _is_loopback(configured):
        return configured
    if all(_is_loopback(node_address(node)) for node in nodes):
        return configured
    return "0.0.0.0"
