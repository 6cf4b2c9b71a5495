"""Resource limits per group and per env on ``conda-kernel-docker``, against a real Docker engine,
and the out-of-memory kill explained in JupyterLab (headless Chromium).

Docker: two users on one hub: ``hogger`` (userlist ``group:students``: 256 MB, 1 CPU) and ``calm``
(``group:visitors``, a group ``resource_limits`` does not name: the ``"*"`` limits). hogger
sees the limits in the spawn form, opens JupyterLab and runs a memory hog in a kernel: the engine
stops it (the container's memory cgroup counts the kill) and JupyterLab says which limit it was;
it is the kernel that dies (it raised its own ``oom_score_adj``), not the server: the same
container and server PID answer without a restart. calm's server and kernel keep running. A spawn request for an env that is not offered is still
refused. Swarm (one node): the service gets the group's limits and the placement constraints of
the group, the env and ``extra_placement_spec``, merged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_docker_spawner as single
from harness import ARTIFACTS, browser_login, free_port, run_in_kernel, wait_until

pytestmark = pytest.mark.docker
# the engine, the image and the shared envs of the single-host tests (fixtures, module scope)
dockerd, image, shared_envs = single.dockerd, single.image, single.shared_envs

M = 1024**2
LIMITS = """
    c.CondaKernelContainerSpawner.resource_limits = {
        "*": {"mem_limit": "1G", "cpu_limit": 2},
        "group:students": {"mem_limit": "256M", "cpu_limit": 1},
    }
    c.CondaKernelSpawner.lab_status_refresh = 5
    """
#: about 1.2 GB in 32 MB pieces, each written (a 256 MB limit stops it long before the end)
HOG = """
chunks = []
for _ in range(40):
    chunks.append(b"\\x01" * (32 * 1024 * 1024))
print("survived", len(chunks))
"""
#: the kernel's PID, its parent's (the server's) and the score the kernel's launcher set
WHO = """
import os
print(os.getpid(), os.getppid(), open("/proc/self/oom_score_adj").read().strip())
"""
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "_static" / "lab-status"


def _container_of(client, name: str) -> dict:
    """The running container of ``name``'s server (dockerspawner escapes names: match the env)."""
    boxes = [client.inspect_container(c["Id"]) for c in client.containers()]
    (found,) = [b for b in boxes if f"JUPYTERHUB_USER={name}" in b["Config"]["Env"]]
    return found


def _memory_cgroup(container: dict) -> Path:
    """The container's memory cgroup directory on the host (cgroup v1 or v2)."""
    lines = Path(f"/proc/{container['State']['Pid']}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    (unified,) = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    return Path("/sys/fs/cgroup") / unified.lstrip("/")


def _oom_kills(cgroup: Path) -> int:
    name = "memory.oom_control" if (cgroup / "memory.oom_control").exists() else "memory.events"
    counters = dict(line.split() for line in (cgroup / name).read_text().splitlines())
    return int(counters["oom_kill"])


def _who(hub, name: str, kernel_id: str) -> list[str]:
    """``[kernel pid, server pid, oom_score_adj]`` from inside the kernel."""
    out = run_in_kernel(hub, name, kernel_id, WHO, timeout=10)
    assert not out["error"], out
    return out["stdout"].split()


def hog_stops_only_the_kernel(hub, name: str, find_box) -> None:
    """A memory hog in a new kernel of ``name``'s server (container: ``find_box()``) is stopped by
    the engine's OOM killer, and it is the kernel that dies: it raised its own ``oom_score_adj``
    to 1000, so the server (~130 MB of the 256) stays, in the same container with the same PID,
    and the restarted kernel is its child again."""
    box = find_box()
    cgroup = _memory_cgroup(box)
    kills = _oom_kills(cgroup)
    kernel = hub.server_api(name, "POST", "kernels", json={})
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    kernel_pid, server_pid, score = _who(hub, name, kernel_id)
    assert score == "1000"
    try:
        out = run_in_kernel(hub, name, kernel_id, HOG, timeout=60)
    except (TimeoutError, ConnectionError) as e:  # the kernel died mid-request
        out = {"stdout": "", "error": repr(e)}
    assert "survived" not in out["stdout"], out
    wait_until(lambda: _oom_kills(cgroup) > kills, timeout=60, what="the engine's OOM kill")
    # the same server: no new container, no restart, the lab answers at once
    after = find_box()
    same = ("Id", "RestartCount")
    assert [after[k] for k in same] == [box[k] for k in same]
    assert after["State"]["StartedAt"] == box["State"]["StartedAt"]
    assert after["State"]["Running"] is True
    assert hub.server_api(name, "GET", "status").status_code == 200
    # the kernel died: the server restarted it, as a new process of the same server
    new_pid, parent, _ = wait_until(
        lambda: _who(hub, name, kernel_id), timeout=90, interval=1, what="the restarted kernel"
    )
    assert new_pid != kernel_pid and parent == server_pid, (kernel_pid, new_pid, server_pid)


def _open_lab_with_form(page, hub, ident: str, env: str) -> str:
    """Log in in the browser, check the form's limits text, pick ``env``; the form's text."""
    browser_login(page, hub, ident, "/hub/spawn")
    page.wait_for_selector("#jhle-shared-envs", timeout=60_000)
    text = page.locator(f"label[data-env-name='{env}']").inner_text()
    page.check(f"input[value='{env}']")
    page.locator("form input[type=submit], form button[type=submit]").last.click()
    page.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
    return text


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"docker-limits-{name}.png"))
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SHOTS / f"{name}.png"))


def test_group_limit_stops_a_memory_hog_and_jupyterlab_says_why(
    make_hub, oidc, user_prefix, dockerd, image, shared_envs, page
):
    hogger, calm = f"{user_prefix}hogger", f"{user_prefix}calm"
    for ident in ("hogger", "calm"):
        oidc.set_identity(ident, email=f"{ident}@example.org", email_verified=True)
    config = single._config("conda-kernel-docker", "CondaKernelDockerSpawner", image, shared_envs)
    hub = make_hub(
        config + LIMITS,
        userlist="hogger group:students\ncalm group:visitors\n",
        env=dockerd.env(),
    )
    client = dockerd.client.api
    try:
        # calm: a forged env is refused as before; the default env then gets the "*" limits
        single._login_and_pick(hub, "calm", calm, "shared/py")
        assert hub.user_model(calm)["groups"] == ["visitors"]
        calm_box = _container_of(client, calm)
        assert calm_box["HostConfig"]["Memory"] == 1024 * M
        assert calm_box["HostConfig"]["CpuQuota"] == 2 * calm_box["HostConfig"]["CpuPeriod"]
        assert "JUPYTERHUB_LAB_EXT_MEM_LIMIT_FROM=*" in calm_box["Config"]["Env"]
        hub.stop_server(calm)
        forged = hub.start_server(calm, options={"profile": "shared/../../etc"}, wait=False)
        assert forged.status_code == 400, forged.text
        again = hub.start_server(calm, options={"profile": "shared/py"}, timeout=180)
        assert again.status_code in (201, 202), again.text
        calm_box = _container_of(client, calm)
        assert calm_box["HostConfig"]["Memory"] == 1024 * M
        calm_kernel = hub.server_api(calm, "POST", "kernels", json={}).json()["id"]

        # hogger: the form shows the group's limits; the container gets them
        form_text = _open_lab_with_form(page, hub, "hogger", "shared/geo")
        assert "Limits: 256 MB · 1 CPU" in form_text, form_text
        assert hub.user_model(hogger)["groups"] == ["students"]
        box = _container_of(client, hogger)
        assert box["HostConfig"]["Memory"] == 256 * M
        assert box["HostConfig"]["MemorySwap"] == 256 * M
        assert box["HostConfig"]["CpuQuota"] == box["HostConfig"]["CpuPeriod"]
        assert "JUPYTERHUB_LAB_EXT_MEM_LIMIT_FROM=group:students" in box["Config"]["Env"]
        cgroup = _memory_cgroup(box)
        assert _oom_kills(cgroup) == 0
        page.locator(".jp-jhle-status").wait_for(timeout=60_000)

        hog_stops_only_the_kernel(hub, hogger, lambda: _container_of(client, hogger))
        assert _oom_kills(cgroup) >= 1

        toast = page.locator(".Toastify__toast", has_text="stopped by your server's memory limit")
        toast.wait_for(timeout=60_000)
        text = toast.inner_text()
        assert "256 MB, your group students" in text, text
        news = page.locator(".Toastify__toast", has_text="official Jupyter news")
        if news.count():  # JupyterLab's own question, not ours: out of the screenshot
            news.get_by_role("button", name="No", exact=True).click()
            news.wait_for(state="detached")
        _shot(page, "oom-kill")
        page.locator(".jp-jhle-status").click()
        details = page.locator(".jp-jhle-details")
        details.wait_for()
        assert "Memory limit: 256 MB, your group students; kernels stopped by it: 1" in (
            details.inner_text()
        )

        # the server lives on (only the kernel was stopped), and so does the other user's
        assert _container_of(client, hogger)["State"]["Running"] is True
        assert hub.server_api(hogger, "GET", "status").status_code == 200
        again = run_in_kernel(hub, calm, calm_kernel, "print(6 * 7)", timeout=60)
        assert again["stdout"].strip() == "42", again
        assert hub.user_model(calm)["servers"][""]["ready"] is True
    finally:
        for name in (hogger, calm):
            if (hub.user_model(name) or {}).get("servers"):
                hub.stop_server(name)


def test_swarm_service_gets_the_limits_and_the_placement_of_group_and_env(
    make_hub, oidc, user_prefix, dockerd, image, shared_envs
):
    dockerd.swarm_init(port=free_port())
    name = f"{user_prefix}swen"
    oidc.set_identity("swen", email="swen@example.org", email_verified=True)
    config = single._config("conda-kernel-swarm", "CondaKernelSwarmSpawner", image, shared_envs)
    hub = make_hub(
        config
        + LIMITS
        + """
    c.CondaKernelSwarmSpawner.placement_constraints = {
        "group:students": ["node.role == manager"],
        "env:shared/geo": ["node.platform.os == linux"],
    }
    c.CondaKernelSwarmSpawner.extra_placement_spec = {"constraints": ["node.role == manager"]}
    """,
        userlist="swen group:students\n",
        env=dockerd.env(),
    )
    client = dockerd.client.api
    try:
        single._login_and_pick(hub, "swen", name, "shared/geo")
        (service,) = client.services()
        template = service["Spec"]["TaskTemplate"]
        assert template["Resources"]["Limits"] == {"MemoryBytes": 256 * M, "NanoCPUs": 10**9}
        assert template["Placement"]["Constraints"] == [
            "node.role == manager",
            "node.platform.os == linux",
        ]
        env = template["ContainerSpec"]["Env"]
        assert "JUPYTERHUB_LAB_EXT_MEM_LIMIT_FROM=group:students" in env
        (task,) = client.tasks(filters={"service": service["ID"], "desired-state": "running"})
        box = client.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
        assert box["HostConfig"]["Memory"] == 256 * M
    finally:
        if (hub.user_model(name) or {}).get("servers"):
            hub.stop_server(name)
        hub.stop()
        dockerd.swarm_leave()
