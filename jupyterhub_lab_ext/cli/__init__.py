"""The admin command line, ``jupyterhub-lab-ext`` (``main``), and its subcommands.

Runs in its own short-lived process as the admin. May import ``auth``, ``accounts``, ``kernels``,
``spawner`` and ``util`` (it reads the hub's config and acts like the hub would); nothing imports it.
"""
