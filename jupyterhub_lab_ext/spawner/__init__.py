"""The conda-kernel spawners: the spawn form, the env choice and the server's kernel settings.

``conda_kernel`` holds the feature (:class:`CondaKernelSpawner`, whose options apply to every
variant), ``local`` the local-process spawner (``conda-kernel``), ``docker`` the Docker and Swarm
variants (``conda-kernel-docker``, ``conda-kernel-swarm``; it imports dockerspawner at the top,
and JupyterHub imports it only when an admin selects one of them).

Runs in the hub process. May import ``kernels`` and ``util``; never ``auth``, ``services`` or ``cli``.
Nothing is imported here: importing this folder loads no spawner.
"""
