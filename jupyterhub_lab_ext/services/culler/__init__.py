"""The idle culler: ``jupyterhub-lab-idle-culler`` / ``python -m jupyterhub_lab_ext.services.culler``.

- ``policy`` decides on one server or user (pure); ``aimd`` decides how many stops may be in
  flight from the hub's answer times (pure); ``userview`` is a user's culling view (pure);
- ``engine`` runs passes one at a time; each is a ``cullpass.CullingPass`` (list, decide, act)
  that acts through ``actions``, remembers in ``memory``, finds groups with ``groups`` and waits
  for the ``throttle`` (stops in flight, fixed or kept to a hub-latency budget);
- ``app`` is the service (options in ``options``, the timer in ``schedule``), ``handlers`` its
  REST API, ``store`` its exemptions and warnings, ``metrics``, ``report``, ``webhook``;
- ``hubconfig`` is the one-line ``enable_idle_culler`` for ``jupyterhub_config.py`` (loaded by
  the hub process).

May import ``services.common`` and ``util``; nothing else of the package.
"""
