"""The KubeSpawner recipe of docs/scaling-out.md (example_config/kubernetes/conda_kernel_kube.py).

No cluster: the spawner is built with a kubeconfig naming an address nothing listens on, and
only its pod manifest is checked (building it sends no request). What this shows: the class
composes with the installed kubespawner, and the pod gets what conda-kernel-swarm gives a
container (the envs and the home at their own paths, the user's uid:gid, the limits and the
node selector, the conda-kernel arguments and environment).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
from pathlib import Path

import kubespawner  # in the test extras: pip install 'jupyterhub-lab-ext[test]'
import pytest
from kubernetes_asyncio.config import kube_config
from traitlets.config import Config

RECIPE = (
    Path(__file__).resolve().parents[2] / "example_config" / "kubernetes" / "conda_kernel_kube.py"
)

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: none
contexts: [{name: none, context: {cluster: none, user: none}}]
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: not-a-token}}]
"""


class FakeUser:
    def __init__(self, name):
        self.name = name
        self.escaped_name = name
        self.id = 1
        self.url = f"/user/{name}/"


def load_recipe():
    spec = importlib.util.spec_from_file_location("conda_kernel_kube", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CondaKernelKubeSpawner


@pytest.fixture
def me():
    """A real account, one whose uid and gid differ if there is one (so a swap shows)."""
    accounts = pwd.getpwall()
    return next((a for a in accounts if a.pw_uid != a.pw_gid), pwd.getpwuid(os.getuid()))


@pytest.fixture
def make_spawner(tmp_path, monkeypatch, me):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    # read at import time from $KUBECONFIG, so set where kubespawner's load_config looks
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    cls = load_recipe()

    def make(config: Config | None = None):
        return cls(_mock=True, user=FakeUser(me.pw_name), config=config or Config())

    return make


def test_the_recipe_is_a_conda_kernel_kubespawner():
    from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawner

    cls = load_recipe()
    assert cls.__mro__[1] is CondaKernelSpawner
    assert issubclass(cls, kubespawner.KubeSpawner)


async def test_the_pod_gets_paths_identity_limits_and_placement(make_spawner, me):
    config = Config()
    config.CondaKernelSpawner.shared_env_dirs = ["/srv/envs"]
    config.KubeSpawner.image = "registry.example.org/lab-singleuser:1"
    config.KubeSpawner.mem_limit = "2G"
    config.KubeSpawner.cpu_limit = 1.5
    config.KubeSpawner.node_selector = {"gpu": "true"}
    spawner = make_spawner(config)
    manifest = await spawner.get_pod_manifest()
    pod = spawner.api.api_client.sanitize_for_serialization(manifest)  # the API's JSON
    container = pod["spec"]["containers"][0]

    context = container["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (me.pw_uid, me.pw_gid)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/srv/envs"].get("readOnly") is True
    assert not mounts[me.pw_dir].get("readOnly")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mounts["/srv/envs"]["name"]]["hostPath"]["path"] == "/srv/envs"
    assert volumes[mounts[me.pw_dir]["name"]]["hostPath"]["path"] == me.pw_dir
    assert container["workingDir"] == me.pw_dir

    assert int(container["resources"]["limits"]["memory"]) == 2 * 1024**3
    assert float(container["resources"]["limits"]["cpu"]) == 1.5
    assert pod["spec"]["nodeSelector"] == {"gpu": "true"}

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == me.pw_dir
    assert env["CONDA_ENVS_DIRS"] == os.path.join(me.pw_dir, ".conda", "envs")
    # the server's arguments reach the pod only with an explicit command
    assert container["args"][0] == "jupyterhub-singleuser"
    assert any(a.startswith("--ServerApp.kernel_spec_manager_class=") for a in container["args"])


async def test_the_env_choice_is_not_taken_for_a_kubespawner_profile(make_spawner):
    spawner = make_spawner()
    spawner.user_options = {"profile": "shared/python3"}
    # KubeSpawner alone refuses the spawn: it looks the env up in its (empty) profile_list
    with pytest.raises(ValueError, match="No such profile"):
        await kubespawner.KubeSpawner.load_user_options(spawner)
    await spawner.load_user_options()
    assert spawner.user_options == {"profile": "shared/python3"}
