"""Where a swarm service's server runs: its current task, that task's node, the node's address.

With host networking a user's server listens on the network of the node where swarm placed its
task, so the hub and the proxy must reach it at that node's address, and the server must listen
on an address that the hub can reach. These are pure functions over the Docker Engine API's
documents (``GET /tasks``, ``GET /nodes/{id}``); the spawner (spawner/docker.py) fetches them.
"""

from __future__ import annotations

import ipaddress

__all__ = ["current_task", "listen_ip", "node_address"]


def _version(task: dict) -> tuple[int, str]:
    return (task.get("Version", {}).get("Index", 0), task.get("UpdatedAt", ""))


def current_task(tasks: list[dict]) -> dict | None:
    """The task that stands for the service now, among all the service's tasks.

    Swarm keeps the tasks it replaced (after a restart or a reschedule, with desired state
    ``shutdown``), so this is the newest task whose desired state is ``running``, preferring one
    that runs; with none, the newest task of all (its status says why the service is down).
    """
    if not tasks:
        return None
    wanted = [t for t in tasks if t.get("DesiredState") == "running"]
    running = [t for t in wanted if t.get("Status", {}).get("State") == "running"]
    return max(running or wanted or tasks, key=_version)


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
