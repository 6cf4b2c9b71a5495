"""Login: the userlist OAuth authenticator and everything it decides.

Who may log in and who is admin (``userlist``), identity -> system username (``naming``), OIDC
discovery, the hub-side access pass that revokes removed users' credentials (``access``, ``removal``)
and the authenticator classes an admin selects (``authenticator``).

Runs in the hub process. May import ``accounts`` and ``util``; never ``spawner``, ``kernels``,
``services`` or ``cli``.
"""
