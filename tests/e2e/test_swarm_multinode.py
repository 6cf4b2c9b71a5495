"""``conda-kernel-swarm`` on a real two-node Docker Swarm (tests/e2e/swarm_env.py).

Two dockerd nodes, each in its own network namespace on a bridge of the host; node 1 manages. The
hub (with CHP, the user-limit service and the idle culler) runs on the host with PostgreSQL as its
database, its API on the bridge address so that servers on the nodes reach it; servers run in
swarm services with host networking of their node, so the hub and the proxy must reach each at
its node's address. Homes and the shared envs are host directories, the same paths on every node
(the shared mount namespace stands in for NFS). Users' groups in the userlist place them
(``placement_constraints``) and limit them (``resource_limits``): ``site1`` on node 1, ``site2`` on
node 2 with 256 MB, where a memory hog is stopped by that node's engine.

One flow, in phases: two users on two nodes (routes to the node addresses, kernels writing the
homes as the users), the memory hog, the user limit's cap across nodes, a hub restart on the same
PostgreSQL database, stop, a third user's server that follows its task when its node is drained,
and the culler stopping the idle servers on the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
from pathlib import Path

import httpx
import pytest
from envs import make_conda_env, trusted_dir
from harness import free_port, run_in_kernel, wait_until
from swarm_env import MultiNodeSwarm
from test_docker_limits import M, hog_stops_only_the_kernel

pytestmark = pytest.mark.docker

WRITE = """
import json, os, socket, sys
path = os.path.join(os.environ["HOME"], "written-on-node.txt")
with open(path, "w") as f:
    f.write("from the kernel")
print(json.dumps({"prefix": sys.prefix, "uid": os.getuid(), "gid": os.getgid(), "path": path,
                  "in_image": os.path.exists("/etc/jhle-image.json")}))
"""


@pytest.fixture(scope="module")
def swarm():
    if os.environ.get("JHLE_SKIP_DOCKER") == "1":  # the explicit opt-out of scripts/test.sh
        pytest.skip("JHLE_SKIP_DOCKER=1: Docker was not installed on purpose")
    nodes = MultiNodeSwarm(2)
    try:
        yield nodes.start()  # raises (never skips) with the daemon's log when an engine fails
    finally:
        nodes.stop()
        assert nodes.leftovers() == [], nodes.leftovers()


@pytest.fixture(scope="module")
def shared_env():
    root = trusted_dir("swarm-envs-")  # root-owned up to /, as the trust rule wants
    try:
        make_conda_env(root / "py")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def hub_config(swarm: MultiNodeSwarm, shared: Path, db_url: str) -> str:
    """What an admin of a multi-node swarm writes: the spawner, the hub's API on an address the
    nodes reach, PostgreSQL, servers kept across hub restarts, placement and limits per group
    (group ``site1`` on node 1; ``site2`` on node 2 with 256 MB), the user limit (cap 2)."""
    n1, n2 = (swarm.constraint(node) for node in swarm.nodes)
    return f"""
    c.JupyterHub.spawner_class = 'conda-kernel-swarm'
    c.JupyterHub.hub_ip = {swarm.bridge_address!r}
    c.JupyterHub.hub_connect_ip = {swarm.bridge_address!r}
    c.JupyterHub.db_url = {db_url!r}
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.last_activity_interval = 3  # the route check that follows a moved server
    c.Spawner.poll_interval = 2
    c.CondaKernelSwarmSpawner.image = {swarm.image!r}
    c.CondaKernelSwarmSpawner.shared_env_dirs = [{str(shared)!r}]
    c.CondaKernelSwarmSpawner.default_env = 'shared/py'
    c.CondaKernelSwarmSpawner.cmd = None  # the image's jupyterhub-singleuser
    c.CondaKernelSwarmSpawner.start_timeout = 180
    c.CondaKernelSwarmSpawner.placement_constraints = {{
        'group:site1': [{n1!r}],
        'group:site2': [{n2!r}],
    }}
    c.CondaKernelSwarmSpawner.resource_limits = {{
        'group:site2': {{'mem_limit': '256M', 'cpu_limit': 1}},
    }}
    from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit
    enable_user_limit(c, {{'max_active_servers': 2, 'start_queued_servers': False,
                          'reconcile_interval': 3}}, url='http://127.0.0.1:{free_port()}')
    """


def culler_config(timeout: int) -> str:
    return f"""
    from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler
    enable_idle_culler(c, url='http://127.0.0.1:{free_port()}',
                       args=['--timeout={timeout}', '--cull-every=2'])
    """


def _services_of(swarm: MultiNodeSwarm, name: str) -> list[dict]:
    """The swarm services that run ``name``'s server (by the server's environment)."""
    api = swarm.manager.engine.client.api
    return [
        s
        for s in api.services()
        if f"JUPYTERHUB_USER={name}" in s["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", [])
    ]


def _task_of(swarm: MultiNodeSwarm, name: str) -> dict:
    (service,) = _services_of(swarm, name)
    (task,) = [t for t in swarm.running_tasks() if t["ServiceID"] == service["ID"]]
    return task


def _container_of(node, name: str) -> dict:
    """The running container of ``name``'s server on ``node`` (found by its environment)."""
    api = node.engine.client.api
    boxes = [api.inspect_container(c["Id"]) for c in api.containers()]
    (found,) = [b for b in boxes if f"JUPYTERHUB_USER={name}" in b["Config"]["Env"]]
    return found


@contextlib.contextmanager
def _drained(swarm: MultiNodeSwarm, node):
    """``node`` drained (swarm moves its tasks elsewhere) inside the block, active after it."""
    api = swarm.manager.engine.client.api

    def set_availability(value: str) -> None:
        info = api.inspect_node(node.node_id)
        spec = {**info["Spec"], "Availability": value}
        api.update_node(node.node_id, info["Version"]["Index"], spec)

    set_availability("drain")
    try:
        yield
    finally:
        set_availability("active")


def _routes(hub) -> dict[str, str]:
    resp = hub.api("GET", "proxy")
    assert resp.status_code == 200, resp.text
    return {path: route["target"] for path, route in resp.json().items()}


def _write_from_kernel(hub, name: str, env: Path) -> None:
    """A kernel in the shared env writes into the home; the host sees the file, owned by the user."""
    account = pwd.getpwnam(name)
    kernel = hub.server_api(name, "POST", "kernels", json={})
    assert kernel.status_code == 201, kernel.text
    out = run_in_kernel(hub, name, kernel.json()["id"], WRITE, timeout=90)
    assert out["error"] is None, out
    info = json.loads(out["stdout"].strip().splitlines()[-1])
    assert info["prefix"] == str(env)
    assert (info["uid"], info["gid"]) == (account.pw_uid, account.pw_gid)
    assert info["in_image"] is True
    written = Path(account.pw_dir) / "written-on-node.txt"
    assert written.read_text() == "from the kernel"
    stat = os.stat(written)
    assert (stat.st_uid, stat.st_gid) == (account.pw_uid, account.pw_gid)


def _servers_found(hub, names: list[str]) -> None:
    """After a hub start: every server listed ready, routed to its node, the lab answering."""
    for name in names:
        model = hub.user_model(name)
        assert model["servers"][""]["ready"] is True, model
        resp = hub.server_api(name, "GET", "status")
        assert resp.status_code == 200, resp.text


def _memory_hog_on_worker(hub, swarm: MultiNodeSwarm, hogger: str, other: str) -> None:
    """A memory hog in ``hogger``'s 256 MB group is stopped by the worker's engine; the server of
    ``other`` on the manager (no limit) and its kernel go on."""
    manager, worker = swarm.nodes
    assert _container_of(worker, hogger)["HostConfig"]["Memory"] == 256 * M
    # the kernel, never the server (same container and PID: swarm restarts no task)
    hog_stops_only_the_kernel(hub, hogger, lambda: _container_of(worker, hogger))
    assert _container_of(manager, other)["HostConfig"]["Memory"] == 0  # no limit for site1
    kernel = hub.server_api(other, "POST", "kernels", json={})
    assert run_in_kernel(hub, other, kernel.json()["id"], "print(6 * 7)")["stdout"].strip() == "42"


def _follows_its_task(hub, swarm: MultiNodeSwarm, name: str) -> None:
    """``name``'s server (no constraint, on the manager) moves when the manager is drained: the
    hub's poll finds the new node, the route check points the proxy there, the lab answers."""
    manager, worker = swarm.nodes
    assert _task_of(swarm, name)["NodeID"] == manager.node_id  # swarm spreads
    with _drained(swarm, manager):
        wait_until(
            lambda: _task_of(swarm, name)["NodeID"] == worker.node_id,
            timeout=120,
            interval=1,
            what="the task rescheduled on the worker",
        )
        wait_until(
            lambda: _routes(hub)[f"/user/{name}/"].startswith(f"http://{worker.address}:"),
            timeout=60,
            interval=1,
            what="the proxy's route moved to the worker",
        )
        wait_until(
            lambda: hub.server_api(name, "GET", "status").status_code == 200,
            timeout=60,
            interval=1,
            what="the lab answering on the worker",
        )
        assert hub.user_model(name)["servers"][""]["ready"] is True


def _culled_on_worker(hub, swarm: MultiNodeSwarm, names: list[str]) -> None:
    """The hub restarted with the culler (short timeout): the idle servers on the worker stop,
    their services and containers go."""
    api = swarm.manager.engine.client.api
    _servers_found(hub, names)
    hub.stop()
    hub.append_config(culler_config(timeout=8))
    hub.start()  # they have been idle for a while: the culler's first pass may stop them
    wait_until(
        lambda: not any((hub.user_model(n) or {}).get("servers") for n in names),
        timeout=120,
        interval=1,
        what="the idle servers on the worker culled",
    )
    wait_until(lambda: not api.services(), timeout=60, what="the culled servers' services removed")
    wait_until(
        lambda: not swarm.nodes[1].engine.client.containers.list(all=True),
        timeout=60,
        what="the culled servers' containers removed from the worker",
    )
    for name in names:  # stopped by the culler (not found dead by the hub)
        assert f"DELETE /hub/api/users/{name}/server (idle-culler@" in hub.log_text()
        assert httpx.get(f"{hub.url}/user/{name}/api/status", timeout=10).status_code != 200


def test_two_nodes_limits_cap_hub_restart_rescheduling_culler(
    make_hub, oidc, user_prefix, swarm, shared_env, postgres
):
    a, b, c = (f"{user_prefix}{s}" for s in ("ana", "ben", "cid"))
    for ident in ("ana", "ben", "cid"):
        oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    manager, worker = swarm.nodes
    hub = make_hub(
        hub_config(swarm, shared_env, postgres.url()),
        userlist="ana group:site1\nben group:site2\ncid\n",
        env=swarm.env(),
    )

    # two users log in and start servers; their groups' constraints put them on different nodes
    for ident, name in (("ana", a), ("ben", b)):
        client, resp = hub.login(ident)
        client.close()
        assert resp.status_code == 200, resp.text[:500]
        resp = hub.api("POST", f"users/{name}/server", json={"profile": "shared/py"})
        assert resp.status_code in (201, 202), resp.text
    for name in (a, b):
        hub.wait_ready(name, timeout=180)
    assert _task_of(swarm, a)["NodeID"] == manager.node_id
    assert _task_of(swarm, b)["NodeID"] == worker.node_id
    routes = _routes(hub)  # the proxy routes each server to its node's address
    assert routes[f"/user/{a}/"].startswith(f"http://{manager.address}:"), routes
    assert routes[f"/user/{b}/"].startswith(f"http://{worker.address}:"), routes

    # kernels in the shared env, as each user's uid; files land in the homes on the host
    _write_from_kernel(hub, a, shared_env / "py")
    _write_from_kernel(hub, b, shared_env / "py")
    _memory_hog_on_worker(hub, swarm, b, a)

    # the user limit counts servers on both nodes: a third user is queued, nothing is spawned
    client, resp = hub.login("cid")
    client.close()
    resp = hub.api("POST", f"users/{c}/server", json={})
    assert resp.status_code == 429, resp.text
    assert len(manager.engine.client.api.services()) == 2

    # the hub restarts on the same PostgreSQL database and finds both servers at their nodes
    hub.restart()
    _servers_found(hub, [a, b])
    assert _routes(hub) == routes

    # stop removes the service; the third user's server then starts and follows its task
    hub.stop_server(a)
    wait_until(lambda: not _services_of(swarm, a), timeout=60, what="ana's service removed")
    assert hub.start_server(c, timeout=180).status_code in (201, 202)
    _follows_its_task(hub, swarm, c)

    _culled_on_worker(hub, swarm, [b, c])
