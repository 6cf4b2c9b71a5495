"""The user-limit service: caps, seats, group quotas and a waiting queue.

In the service process: ``policy`` decides (pure), ``records`` are the book's data, ``ledger``
keeps the book and ``store`` persists it, ``background`` moves the line and reconciles with the
hub, ``app`` is the service (the ``jupyterhub-lab-user-limit`` command), ``handlers`` its REST
API and queue page, ``metrics`` its Prometheus metrics.

In the hub process: ``hubconfig`` has the one-line ``enable_user_limit`` for
``jupyterhub_config.py``, ``hook`` what the hub runs for each spawn, stop and login, ``client``
the hook's HTTP client. Imports only ``util`` and ``services.common`` from the package.
"""
