"""The conda-kernel spawners: the spawn form, the env choice and the server's kernel settings.

``conda_kernel`` holds the feature and the local-process spawner; ``docker`` the Docker and Swarm
variants (it imports dockerspawner at the top: only the entry points that an admin selects load it).

Runs in the hub process. May import ``kernels`` and ``util``; never ``auth``, ``services`` or ``cli``.
Nothing is imported here: importing this folder loads no spawner.
"""
