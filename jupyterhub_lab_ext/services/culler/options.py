"""Options beyond plain traitlets: a budget that may be ``off``, jupyterhub-idle-culler's config."""

from __future__ import annotations

from collections.abc import Container, Mapping

from traitlets import Float

#: settings of a config file that are not options of the culler itself
_NOT_OPTIONS = ("config_file", "generate_config")


class LatencyBudget(Float):
    """Milliseconds, >= 0; ``off`` (any case) means 0, as on the command line."""

    def validate(self, obj, value):
        if isinstance(value, str) and value.strip().lower() == "off":
            value = 0.0
        return super().validate(obj, value)

    def from_string(self, s):
        return 0.0 if s.strip().lower() == "off" else super().from_string(s)


def upstream_options(
    upstream: Mapping, ours: Mapping, known: Container[str]
) -> tuple[dict, list[str]]:
    """A jupyterhub-idle-culler config (``c.IdleCuller.<option>``) as our options.

    Returns the options to adopt (those we have and that ``ours`` does not set already) and
    the names we do not have (to be ignored, with a warning).
    """
    adopted, unknown = {}, []
    for key, value in upstream.items():
        if key in _NOT_OPTIONS:
            continue
        if key not in known:
            unknown.append(key)
        elif key not in ours:
            adopted[key] = value
    return adopted, unknown
