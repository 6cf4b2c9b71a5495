"""What both services share: the traitlets app base and its options (``app``), its HTTP side
(``web``: routes, TLS, serving; ``handlers``: health, metrics, OpenAPI, index), the ordered run
and the process life (``runner``, ``lifecycle``), request authentication and scope checks
(``auth``, ``scopes``), the async hub API client (``hubapi`` over ``hubhttp``, with
``pagination`` and the token-owner cache ``tokens``), Prometheus metrics, the SQL state store and
its files (``store``, ``statefiles``), and the helpers that write a service's part of
``jupyterhub_config.py`` (``hubconfig``).

Imports flow one way: ``culler`` and ``user_limit`` import from here, never the reverse.
"""
