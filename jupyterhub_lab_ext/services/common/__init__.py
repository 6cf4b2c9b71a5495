"""What both services share: the traitlets app base (``app``), request authentication and scope
checks (``auth``, ``scopes``), the async hub API client (``hubapi``), Prometheus metrics, the SQL state
store and its files (``store``, ``statefiles``), process lifecycle, and the helpers that write a
service's part of ``jupyterhub_config.py`` (``hubconfig``).

Imports flow one way: ``culler`` and ``user_limit`` import from here, never the reverse.
"""
