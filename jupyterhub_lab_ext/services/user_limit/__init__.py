"""The user-limit hub service: caps, seats, group quotas and a waiting queue.

- ``app.UserLimitApp``: the service (``jupyterhub-lab-user-limit``);
- ``hook.enable_user_limit``: the one-line hub-side setup for ``jupyterhub_config.py``;
- ``policy``: the pure admission decisions.
"""

__all__ = ["UserLimitApp", "enable_user_limit"]


def __getattr__(name):
    # lazy: the hub imports hook.py without the service's dependencies being loaded
    if name == "UserLimitApp":
        from .app import UserLimitApp

        return UserLimitApp
    if name == "enable_user_limit":
        from .hook import enable_user_limit

        return enable_user_limit
    raise AttributeError(name)
