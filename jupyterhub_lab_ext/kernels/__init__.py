"""Conda environments and the kernels made from them.

Env discovery (``conda_envs``), what counts as an env prefix (``env_prefix``), why a directory was
skipped (``env_skips``), the shared-env trust rule (``env_trust``) and the kernelspec manager every
user's server loads (``kernelspec``, ``quiet_refusals``).

Loaded inside every single-user server as well as by the hub's spawner: imports only ``util``, the
standard library and jupyter_client, never jupyterhub.
"""
