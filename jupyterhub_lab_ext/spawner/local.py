"""``conda-kernel``: the conda-kernel feature on JupyterHub's ``LocalProcessSpawner``.

Each user's server runs as a local process of their system user; the options are those of
:class:`~jupyterhub_lab_ext.spawner.conda_kernel.CondaKernelSpawner` (``c.CondaKernelSpawner.*``,
shared with the Docker and Swarm variants) plus JupyterHub's own for ``LocalProcessSpawner``.
"""

from __future__ import annotations

from jupyterhub.spawner import LocalProcessSpawner

from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawner

__all__ = ["LocalCondaKernelSpawner"]


class LocalCondaKernelSpawner(CondaKernelSpawner, LocalProcessSpawner):
    """LocalProcessSpawner whose users pick a shared or personal conda env (``conda-kernel``)."""
