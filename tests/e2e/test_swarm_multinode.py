"""``conda-kernel-swarm`` on a real two-node Docker Swarm (tests/e2e/swarm_env.py).

Two dockerd nodes, each in its own network namespace on a bridge of the host; node 1 manages. The
hub (with CHP, the user-limit service and the idle culler) runs on the host with PostgreSQL as its
database, its API on the bridge address so that servers on the nodes reach it; servers run in
swarm services with host networking of their node, so the hub and the proxy must reach each at
its node's address. Homes and the shared envs are host directories, the same paths on every node
(the shared mount namespace stands in for NFS).
"""

from __future__ import annotations

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


def hub_config(swarm: MultiNodeSwarm, shared: Path, db_url: str, placement: dict) -> str:
    """What an admin of a multi-node swarm writes: the spawner, the hub's API on an address the
    nodes reach, PostgreSQL, servers kept across hub restarts, the user limit (cap 2)."""
    nodes = {user: swarm.constraint(swarm.node(node)) for user, node in placement.items()}
    return f"""
    c.JupyterHub.spawner_class = 'conda-kernel-swarm'
    c.JupyterHub.hub_ip = {swarm.bridge_address!r}
    c.JupyterHub.hub_connect_ip = {swarm.bridge_address!r}
    c.JupyterHub.db_url = {db_url!r}
    c.JupyterHub.cleanup_servers = False
    c.CondaKernelSwarmSpawner.image = {swarm.image!r}
    c.CondaKernelSwarmSpawner.shared_env_dirs = [{str(shared)!r}]
    c.CondaKernelSwarmSpawner.default_env = 'shared/py'
    c.CondaKernelSwarmSpawner.cmd = None  # the image's jupyterhub-singleuser
    c.CondaKernelSwarmSpawner.start_timeout = 180
    PLACEMENT = {nodes!r}

    def place(spawner):  # force the two users onto different nodes
        constraint = PLACEMENT.get(spawner.user.name)
        if constraint:
            spawner.extra_placement_spec = {{'constraints': [constraint]}}

    c.Spawner.pre_spawn_hook = place
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


def test_two_nodes_limit_hub_restart_culler(
    make_hub, oidc, user_prefix, swarm, shared_env, postgres
):
    a, b, c = (f"{user_prefix}{s}" for s in ("ana", "ben", "cid"))
    for ident in ("ana", "ben", "cid"):
        oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    manager, worker = swarm.nodes
    hub = make_hub(
        hub_config(swarm, shared_env, postgres.url(), {a: "n1", b: "n2"}),
        userlist="ana\nben\ncid\n",
        env=swarm.env(),
    )
    api = manager.engine.client.api

    # two users log in and start servers; the constraints put them on different nodes
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

    # the proxy routes each server to its node's address
    routes = _routes(hub)
    assert routes[f"/user/{a}/"].startswith(f"http://{manager.address}:"), routes
    assert routes[f"/user/{b}/"].startswith(f"http://{worker.address}:"), routes

    # kernels in the shared env, as each user's uid; files land in the homes on the host
    _write_from_kernel(hub, a, shared_env / "py")
    _write_from_kernel(hub, b, shared_env / "py")

    # the user limit counts servers on both nodes: a third user is queued, nothing is spawned
    client, resp = hub.login("cid")
    client.close()
    resp = hub.api("POST", f"users/{c}/server", json={})
    assert resp.status_code == 429, resp.text
    assert len(api.services()) == 2

    # the hub restarts on the same PostgreSQL database and finds both servers at their nodes
    hub.restart()
    _servers_found(hub, [a, b])
    assert _routes(hub) == routes

    # stop removes the service
    hub.stop_server(a)
    wait_until(
        lambda: not _services_of(swarm, a),
        timeout=60,
        what="the stopped server's service removed",
    )

    # the culler stops the idle server on the worker (hub restarted with a short timeout)
    hub.stop()
    hub.append_config(culler_config(timeout=8))
    hub.start()
    _servers_found(hub, [b])
    wait_until(
        lambda: "" not in (hub.user_model(b) or {}).get("servers", {}),
        timeout=120,
        interval=1,
        what="the idle server on the worker culled",
    )
    wait_until(lambda: not api.services(), timeout=60, what="the culled server's service removed")
    wait_until(
        lambda: not worker.engine.client.containers.list(all=True),
        timeout=60,
        what="the culled server's container removed from the worker",
    )
    assert httpx.get(f"{hub.url}/user/{b}/api/status", timeout=10).status_code != 200
