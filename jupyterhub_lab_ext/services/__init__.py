"""The package's two hub services and what they share.

``common`` (the service app base, request auth by token scopes, the hub API client, metrics, the
state store), ``culler`` (the idle culler) and ``user_limit`` (caps, quotas and the waiting queue).
Each service runs in its own process, started by the hub; the only code of theirs the hub process
loads is each service's ``hubconfig`` (and the user-limit spawn hook) from ``jupyterhub_config.py``.

May import ``util``; never ``auth``, ``accounts``, ``spawner``, ``kernels`` or ``cli``.
"""
