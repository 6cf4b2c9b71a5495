"""The admin command line, ``jupyterhub-lab-ext`` (``main``), and its subcommands.

``main`` dispatches to one module per area: ``userlist``, ``homes``, ``envs``. Every subcommand
that reads the hub's settings (``--config jupyterhub_config.py``) does it through ``hubconfig``,
which configures the hub's authenticator or spawner class exactly as the hub would.

Runs in its own short-lived process as the admin. May import ``auth``, ``accounts``, ``kernels``,
``spawner`` and ``util`` (it reads the hub's config and acts like the hub would); nothing imports it.
"""
