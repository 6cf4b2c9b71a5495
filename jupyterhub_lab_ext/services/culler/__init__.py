"""The idle culler: ``jupyterhub-lab-idle-culler`` / ``python -m jupyterhub_lab_ext.services.culler``.

``policy`` decides (pure), ``engine``/``actions`` run a pass against the hub, ``app`` is the service,
``handlers`` its REST API, ``store`` its exemptions and pass history, ``hubconfig`` the one-line
``enable_idle_culler`` for ``jupyterhub_config.py``.
"""
