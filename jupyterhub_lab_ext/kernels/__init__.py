"""Conda environments and the kernels made from them.

Env discovery (``conda_envs``), what counts as an env prefix (``env_prefix``), why a directory was
skipped (``env_skips``), the shared-env trust rule (``env_trust``), the settings the spawner passes
to the server (``server_env``) and the kernelspec manager every user's server loads
(``kernelspec``, ``quiet_refusals``).

Loaded inside every single-user server as well as by the hub's spawner: imports only ``util`` and what
every Jupyter server has (the standard library, traitlets, tornado, jupyter_client), never
jupyterhub.
"""
