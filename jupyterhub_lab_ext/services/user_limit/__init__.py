"""The user-limit service: caps, seats, group quotas and a waiting queue.

``policy`` decides (pure), ``ledger``/``store`` keep admissions, ``app`` is the service (the
``jupyterhub-lab-user-limit`` command), ``handlers`` its REST API and queue page, ``hook`` the spawn
hook the hub runs and the one-line ``enable_user_limit`` for ``jupyterhub_config.py``, ``client`` the
hook's HTTP client.
"""
