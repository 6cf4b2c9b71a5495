"""``conda-kernel-docker`` and ``conda-kernel-swarm`` against a real Docker engine.

A private ``dockerd`` (tests/e2e/docker_env.py: own data/exec roots and socket, no bridge, no
iptables, no registry traffic) and a single-user image built locally from a debootstrap root with
this package inside (cached under /var/cache/jupyterhub-lab-ext). The hub runs on the host as
root with the real userlist authenticator and OIDC provider; the single-user containers (or swarm
tasks) use host networking and reach the hub on 127.0.0.1.

What a user gets, checked from inside their kernel:
- the server runs in the image (not on the host) as the user's own uid/gid, home at the same path;
- the chosen shared env is mounted read-only at the same path and is the kernel's ``sys.prefix``;
- the kernels offered are exactly the shared envs, the chosen one the default;
and the container (or swarm service) is gone after the server stops.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
from docker_env import Dockerd, image_versions, singleuser_image
from envs import make_conda_env, trusted_dir
from harness import Fatal, free_port, parse_forms, run_in_kernel, wait_until

pytestmark = pytest.mark.docker

PROBE = """
import errno, json, os, sys
def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({
    "prefix": sys.prefix,
    "executable": sys.executable,
    "uid": os.getuid(), "gid": os.getgid(),
    "home": os.environ.get("HOME"),
    "conda_envs_dirs": os.environ.get("CONDA_ENVS_DIRS"),
    "in_image": os.path.exists("/etc/jhle-image.json"),
    "env_write": try_write(os.path.join(sys.prefix, "jhle-probe")),
    "home_write": try_write(os.path.join(os.environ.get("HOME", "/nonexistent"), "from-kernel.txt")),
}))
"""


@pytest.fixture(scope="module")
def dockerd():
    if os.environ.get("JHLE_SKIP_DOCKER") == "1":  # the explicit opt-out of scripts/test.sh
        pytest.skip("JHLE_SKIP_DOCKER=1: Docker was not installed on purpose")
    engine = Dockerd()
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def image(dockerd):
    tag = singleuser_image(dockerd)
    # the image must run the same Jupyter stack as the hub's venv
    versions = image_versions(dockerd, tag)
    assert versions["jupyterhub"] == version("jupyterhub"), versions
    return tag


@pytest.fixture(scope="module")
def shared_envs():
    """Two shared envs in a world-readable root-owned dir (like /opt/conda/envs)."""
    root = trusted_dir("docker-envs-")  # root-owned up to /, as the trust rule wants
    try:
        for name in ("geo", "py"):
            make_conda_env(root / name)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _config(spawner: str, cls: str, image: str, shared: Path) -> str:
    # only what an admin of a docker deployment writes; the rest are the spawner's defaults
    # (host networking, uid/gid, home at the same path, shared envs read-only at the same path,
    # the image's jupyterhub-singleuser, containers removed on stop).
    return f"""
    c.JupyterHub.spawner_class = {spawner!r}
    c.JupyterHub.hub_connect_ip = '127.0.0.1'
    c.{cls}.image = {image!r}
    c.{cls}.shared_env_dirs = [{str(shared)!r}]
    c.{cls}.default_env = 'shared/py'
    c.{cls}.cmd = None  # the harness points c.Spawner.cmd at the host venv: use the image's
    """


def _login_and_pick(hub, ident: str, name: str, profile: str) -> None:
    """Log in through the provider, open the spawn form, pick ``profile`` and submit it."""
    client, resp = hub.login(ident, next_url="/hub/spawn")
    try:
        assert resp.status_code == 200, resp.text[:500]
        assert f'value="{profile}"' in resp.text, resp.text[:2000]
        assert 'value="shared/py"' in resp.text
        xsrf = client.cookies.get("_xsrf", path="/hub/")
        form = next(f for f in parse_forms(resp.text) if "spawn" in f["action"])
        data = {**form["inputs"], "profile": profile, "_xsrf": xsrf}
        resp = client.post(f"{hub.url}/hub/spawn/{name}", data=data)
        assert resp.status_code in (200, 202), (resp.status_code, resp.text[:500])
    finally:
        client.close()

    def ready():
        model = hub.user_model(name) or {}
        server = model.get("servers", {}).get("")
        if not server:  # a failed spawn removes the server at once: no point waiting
            raise Fatal(f"the spawn of {name} failed:\n{hub.log_tail(60)}")
        return server["ready"]

    wait_until(ready, timeout=180, what=f"server of {name} ready")


def _check_server(hub, name: str, env: Path, *, kernels: set[str], mine: bool = False) -> None:
    """Kernels offered, and what the default kernel sees from inside the container."""
    account = pwd.getpwnam(name)
    specs = hub.server_api(name, "GET", "kernelspecs")
    assert specs.status_code == 200, specs.text
    assert set(specs.json()["kernelspecs"]) == kernels
    assert specs.json()["default"] == f"{'mine' if mine else 'shared'}-{env.name}"

    kernel = hub.server_api(name, "POST", "kernels", json={})
    assert kernel.status_code == 201, kernel.text
    out = run_in_kernel(hub, name, kernel.json()["id"], PROBE, timeout=90)
    assert out["error"] is None, out
    info = json.loads(out["stdout"].strip().splitlines()[-1])
    assert info["prefix"] == str(env)
    assert info["executable"] == str(env / "bin" / "python")
    assert (info["uid"], info["gid"]) == (account.pw_uid, account.pw_gid)
    assert info["home"] == account.pw_dir
    # users create their own envs in their home (the shared root is read-only)
    assert info["conda_envs_dirs"] == os.path.join(account.pw_dir, ".conda", "envs")
    assert info["in_image"] is True  # the image's root, not the host's
    probe_file = env / "jhle-probe"
    if mine:  # the user's own env, in the home mounted read-write at the same path
        assert info["env_write"] == "ok"
        assert os.stat(probe_file).st_uid == account.pw_uid
    else:
        assert info["env_write"] == "EROFS"  # the shared env is mounted read-only
        assert not probe_file.exists()
    assert info["home_write"] == "ok"
    written = Path(account.pw_dir) / "from-kernel.txt"  # same path on the host
    assert written.read_text() == "x"
    assert os.stat(written).st_uid == account.pw_uid


def _own_env(name: str) -> Path:
    """A personal env in the user's ~/.conda/envs, owned by them (made after their first login)."""
    home = Path(pwd.getpwnam(name).pw_dir)
    prefix = make_conda_env(home / ".conda" / "envs" / "ml", owner=name)
    for path in (home / ".conda", home / ".conda" / "envs"):
        shutil.chown(path, name)
    return prefix


def _check_container(container: dict, name: str, shared: Path) -> None:
    account = pwd.getpwnam(name)
    assert container["State"]["Running"] is True
    assert container["HostConfig"]["NetworkMode"] == "host"
    assert container["Config"]["User"] == f"{account.pw_uid}:{account.pw_gid}"
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts[str(shared)]["Source"] == str(shared)
    assert mounts[str(shared)]["RW"] is False
    assert mounts[account.pw_dir]["Source"] == account.pw_dir
    assert mounts[account.pw_dir]["RW"] is True


def test_docker_server_runs_in_a_container_as_the_user_with_the_shared_env(
    make_hub, oidc, user_prefix, dockerd, image, shared_envs
):
    ident = "dora"
    name = f"{user_prefix}{ident}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub(
        _config("conda-kernel-docker", "CondaKernelDockerSpawner", image, shared_envs),
        userlist=f"{ident}\n",
        env=dockerd.env(),
    )
    client = dockerd.client.api
    try:
        _login_and_pick(hub, ident, name, "shared/geo")
        model = hub.user_model(name)
        assert model["servers"][""]["user_options"] == {"profile": "shared/geo"}
        (container,) = client.containers(filters={"status": "running"})
        _check_container(client.inspect_container(container["Id"]), name, shared_envs)
        _check_server(hub, name, shared_envs / "geo", kernels={"shared-geo", "shared-py"})

        hub.stop_server(name)
        wait_until(
            lambda: not client.containers(all=True, filters={"id": container["Id"]}),
            timeout=60,
            what="the stopped server's container removed",
        )

        # a second start (a new container) with the user's own env from the home mount
        own = _own_env(name)
        resp = hub.start_server(name, options={"profile": "mine/ml"}, timeout=180)
        assert resp.status_code in (201, 202), resp.text
        (second,) = client.containers(filters={"status": "running"})
        assert second["Id"] != container["Id"]
        _check_server(hub, name, own, kernels={"shared-geo", "shared-py", "mine-ml"}, mine=True)
        hub.stop_server(name)
        wait_until(
            lambda: not client.containers(all=True),
            timeout=60,
            what="the second container removed",
        )
    finally:
        if (hub.user_model(name) or {}).get("servers"):
            hub.stop_server(name)


def test_swarm_service_with_host_networking(
    make_hub, oidc, user_prefix, dockerd, image, shared_envs
):
    dockerd.swarm_init(port=free_port())
    ident = "swen"
    name = f"{user_prefix}{ident}"
    oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    hub = make_hub(
        _config("conda-kernel-swarm", "CondaKernelSwarmSpawner", image, shared_envs),
        userlist=f"{ident}\n",
        env=dockerd.env(),
    )
    client = dockerd.client.api
    try:
        _login_and_pick(hub, ident, name, "shared/geo")
        (service,) = client.services()
        (task,) = client.tasks(filters={"service": service["ID"], "desired-state": "running"})
        assert task["Status"]["State"] == "running"
        spec = service["Spec"]
        targets = [n["Target"] for n in spec["TaskTemplate"].get("Networks", [])]
        assert [client.inspect_network(t)["Name"] for t in targets] == ["host"]
        assert not service.get("Endpoint", {}).get("Ports")  # nothing published via ingress
        container = client.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
        _check_container(container, name, shared_envs)
        _check_server(hub, name, shared_envs / "geo", kernels={"shared-geo", "shared-py"})

        hub.stop_server(name)
        wait_until(lambda: not client.services(), timeout=60, what="the service removed")
        wait_until(
            lambda: not client.containers(all=True, filters={"id": container["Id"]}),
            timeout=60,
            what="the task's container removed",
        )
    finally:
        if (hub.user_model(name) or {}).get("servers"):
            hub.stop_server(name)
        hub.stop()
        dockerd.swarm_leave()


def test_private_engine_has_no_bridge_and_answers_only_on_its_socket(dockerd):
    """The rules the docker tests rely on: no default bridge network, unix socket only."""
    names = {n.name for n in dockerd.client.networks.list()}
    assert "bridge" not in names
    assert names >= {"host", "none"}
    info = dockerd.client.info()
    assert info["DockerRootDir"] == str(dockerd.root / "data")
