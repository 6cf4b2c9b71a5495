"""Resource limits and placement per group and per env: the policy (pure, no I/O).

``resource_limits`` and ``placement_constraints`` (see :mod:`jupyterhub_lab_ext.spawner.docker`)
are dicts whose keys say whom an entry is for:

- ``"*"``: everyone;
- ``"group:NAME"``: the members of hub group NAME (the userlist's ``group:NAME``);
- ``"env:ID"``: servers started with the env the spawn form calls ID (``shared/geo``, ``mine/ml``).

Limits resolve per resource (``mem_limit``, ``cpu_limit``, ``mem_guarantee``, ``cpu_guarantee``):
the env's entry wins, else the most generous value among the user's groups, else ``"*"``, else
none. Placement constraints add up: every matching entry's constraints apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from jupyterhub_lab_ext.util.sizes import size_text

EVERYONE = "*"
GROUP = "group:"
ENV = "env:"
#: the resource keys of a ``resource_limits`` entry; the two sizes are bytes, the two CPUs cores
MEMORY_KEYS = ("mem_limit", "mem_guarantee")
CPU_KEYS = ("cpu_limit", "cpu_guarantee")
RESOURCE_KEYS = MEMORY_KEYS + CPU_KEYS
#: unit suffixes of a size, as JupyterHub's ``mem_limit`` takes them (powers of 1024)
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)\s*\Z", re.IGNORECASE)


def parse_size(value: object) -> int:
    """``"256M"`` -> 268435456; an int is bytes. ValueError for anything else (or <= 0)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        number = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    else:
        raise ValueError(f"{value!r} is not a size: write bytes or a number with K, M, G or T")
    if number <= 0:
        raise ValueError(f"{value!r} is not a positive size")
    return number


def parse_cpus(value: object) -> float:
    """A number of cores (``0.5``, ``2``); ValueError unless a positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{value!r} is not a positive number of CPUs")
    return float(value)


def check_key(key: object, trait: str) -> str:
    """A valid entry key, or ValueError saying what the keys may be."""
    if key == EVERYONE:
        return key
    if isinstance(key, str):
        for prefix in (GROUP, ENV):
            name = key[len(prefix) :]
            if key.startswith(prefix) and name and not any(c.isspace() for c in name):
                return key
    raise ValueError(
        f'{trait}: unknown key {key!r}: use "*", "group:NAME" or "env:ENV" (e.g. env:shared/geo)'
    )


def check_limits(config: object) -> dict[str, dict]:
    """``resource_limits`` validated, sizes in bytes and CPUs as floats; ValueError naming the
    entry (and resource) that is wrong."""
    if not isinstance(config, Mapping):
        raise ValueError("resource_limits must be a dict of entries")
    out = {}
    for key, entry in config.items():
        check_key(key, "resource_limits")
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"resource_limits[{key!r}] must be a dict such as {{'mem_limit': '1G'}}"
            )
        checked = {}
        for name, value in entry.items():
            if name not in RESOURCE_KEYS:
                raise ValueError(
                    f"resource_limits[{key!r}]: unknown resource {name!r} "
                    f"(expected one of {', '.join(RESOURCE_KEYS)})"
                )
            parse = parse_size if name in MEMORY_KEYS else parse_cpus
            try:
                checked[name] = parse(value)
            except ValueError as e:
                raise ValueError(f"resource_limits[{key!r}][{name!r}]: {e}") from None
        out[key] = checked
    return out


def check_constraints(config: object) -> dict[str, list[str]]:
    """``placement_constraints`` validated: each key to a list of constraint strings."""
    if not isinstance(config, Mapping):
        raise ValueError("placement_constraints must be a dict of entries")
    for key, entry in config.items():
        check_key(key, "placement_constraints")
        if isinstance(entry, str) or not isinstance(entry, (list, tuple)):
            raise ValueError(f"placement_constraints[{key!r}] must be a list of constraints")
        for constraint in entry:
            if not isinstance(constraint, str) or not constraint.strip():
                raise ValueError(
                    f"placement_constraints[{key!r}]: {constraint!r} is not a constraint "
                    "such as 'node.labels.gpu == true'"
                )
    return {key: list(entry) for key, entry in config.items()}


@dataclass(frozen=True)
class Resolved:
    """The limits of one spawn: ``values`` per resource key, and ``origins``: the entry each
    value came from (``"env:shared/geo"``, ``"group:students"``, ``"*"``)."""

    values: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)


def _keys(env: str | None, groups: Iterable[str]) -> tuple[str | None, list[str]]:
    return (ENV + env if env else None), [GROUP + g for g in sorted(set(groups))]


def resolve(limits: Mapping[str, Mapping], env: str | None, groups: Iterable[str]) -> Resolved:
    """The limits for a server with ``env`` whose user is in ``groups`` (``limits`` checked)."""
    env_key, group_keys = _keys(env, groups)
    values, origins = {}, {}
    for name in RESOURCE_KEYS:
        if env_key in limits and name in limits[env_key]:
            values[name], origins[name] = limits[env_key][name], env_key
            continue
        best = None
        for key in group_keys:  # sorted: of equal values, the first group's name is shown
            value = limits.get(key, {}).get(name)
            if value is not None and (best is None or value > values[name]):
                best, values[name] = key, value
        if best is not None:
            origins[name] = best
        elif name in limits.get(EVERYONE, {}):
            values[name], origins[name] = limits[EVERYONE][name], EVERYONE
    return Resolved(values, origins)


def constraints_for(
    placement: Mapping[str, list], env: str | None, groups: Iterable[str]
) -> list[str]:
    """Every constraint of ``"*"``, the env's entry and the user's groups' entries, in that order,
    each once."""
    env_key, group_keys = _keys(env, groups)
    out: list[str] = []
    for key in (EVERYONE, env_key, *group_keys):
        for constraint in placement.get(key, ()) if key else ():
            if constraint not in out:
                out.append(constraint)
    return out


def cpus_text(cpus: float) -> str:
    """1.0 -> ``1 CPU``; 0.5 -> ``0.5 CPU``; 2 -> ``2 CPUs``."""
    shown = f"{cpus:g}"
    return f"{shown} CPUs" if cpus > 1 else f"{shown} CPU"


def limits_text(values: Mapping) -> str:
    """What the spawn form shows next to an env: ``256 MB · 1 CPU`` ("" without limits)."""
    parts = []
    if "mem_limit" in values:
        parts.append(size_text(values["mem_limit"]))
    if "cpu_limit" in values:
        parts.append(cpus_text(values["cpu_limit"]))
    return " · ".join(parts)


def merge_constraints(configured: Iterable[str] | None, ours: Iterable[str]) -> list[str]:
    """The admin's ``extra_placement_spec`` constraints, then ours, each once."""
    out = list(configured or ())
    return out + [c for c in ours if c not in out]


def docker_host_settings(values: Mapping) -> dict:
    """What DockerSpawner does not map itself, as Docker host settings: swap capped at the memory
    limit (Docker's default allows as much swap again, so a limit would slow a kernel down
    instead of stopping it), the guarantees as a memory reservation and a CPU weight (1024 per
    core: Docker has no CPU reservation for a container)."""
    out = {}
    if "mem_limit" in values:
        out["memswap_limit"] = values["mem_limit"]
    if "mem_guarantee" in values:
        out["mem_reservation"] = values["mem_guarantee"]
    if "cpu_guarantee" in values:
        out["cpu_shares"] = max(2, int(values["cpu_guarantee"] * 1024))
    return out
