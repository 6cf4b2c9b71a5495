"""conda-kernel on Kubernetes: the conda-kernel feature on KubeSpawner (a recipe).

Not part of the package and not tested on a cluster: tests/unit/test_kubespawner_recipe.py
checks that the class composes with the installed kubespawner and builds the pod it should
(same paths, the user's uid:gid, the limits and the node selector), nothing more. Copy this
file next to jupyterhub_config.py and use it as shown in docs/scaling-out.md.

What maps from conda-kernel-swarm:

- the shared env dirs: hostPath volumes, read-only, at their own path (a read-only NFS
  PersistentVolumeClaim works the same way: replace ``hostPath`` in ``_default_volumes``);
- the user's home: a hostPath volume at its own path (or an NFS PVC with ``subPath``);
- the user's uid:gid from the hub's account database: KubeSpawner's ``uid`` and ``gid``;
- limits and placement: KubeSpawner's ``mem_limit``, ``cpu_limit``, ``mem_guarantee``,
  ``cpu_guarantee`` and ``node_selector``, set in the config.
"""

from __future__ import annotations

import pwd

from kubespawner import KubeSpawner
from traitlets import default

from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawner


class CondaKernelKubeSpawner(CondaKernelSpawner, KubeSpawner):
    """KubeSpawner whose users pick a shared or personal conda env."""

    def _account(self):
        """The user's system account on the hub (None without one)."""
        return self.conda_user_context()

    @default("cmd")
    def _default_cmd(self):
        # KubeSpawner drops the server's arguments (the kernelspec manager) unless cmd is set
        return ["jupyterhub-singleuser"]

    @default("uid")
    def _default_uid(self):
        account = self._account()
        return account.uid if account else None

    @default("gid")
    def _default_gid(self):
        account = self._account()
        return pwd.getpwnam(account.name).pw_gid if account else None

    @default("working_dir")
    def _default_working_dir(self):
        account = self._account()
        return account.home if account else ""

    @default("volumes")
    def _default_volumes(self):
        volumes = [
            {"name": f"shared-envs-{i}", "hostPath": {"path": d, "type": "Directory"}}
            for i, d in enumerate(self.shared_env_dirs)
        ]
        account = self._account()
        if account:
            volumes.append(
                {"name": "home", "hostPath": {"path": account.home, "type": "Directory"}}
            )
        return volumes

    @default("volume_mounts")
    def _default_volume_mounts(self):
        mounts = [
            {"name": f"shared-envs-{i}", "mountPath": d, "readOnly": True}
            for i, d in enumerate(self.shared_env_dirs)
        ]
        account = self._account()
        if account:
            mounts.append({"name": "home", "mountPath": account.home})
        return mounts

    def conda_home(self, env: dict) -> str | None:
        account = self._account()
        return env.get("HOME") or (account.home if account else None)

    def get_env(self):
        env = super().get_env()
        account = self._account()
        if account is not None:
            env.setdefault("HOME", account.home)
            env.setdefault("USER", account.name)
        return env

    async def load_user_options(self):
        # user_options["profile"] is the conda env, already checked by apply_user_options;
        # KubeSpawner would look it up in its own profile_list and refuse the spawn
        return None
