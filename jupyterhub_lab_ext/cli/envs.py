"""``jupyterhub-lab-ext envs USER``: the environments and kernels that USER would be offered.

Runs the same discovery as the conda-kernel spawner (file system only, nothing from the envs is
run), with the settings of ``--config jupyterhub_config.py`` or the options given here. Run it as
root (like the hub) to see another user's envs. Environments it found but would not offer are
listed after them with the reason (an unsafe shared directory, another owner, no kernel, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from types import SimpleNamespace

from jupyterhub_lab_ext.cli.hubconfig import HubConfig, HubConfigError
from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig, UserContext, scan
from jupyterhub_lab_ext.kernels.env_prefix import CondaEnv
from jupyterhub_lab_ext.kernels.env_skips import Skip
from jupyterhub_lab_ext.kernels.kernelspec import display_name

#: what ``envs`` takes from the hub's spawner: the discovery settings and the preselected env
HUB_SETTINGS = tuple(f.name for f in dataclasses.fields(DiscoveryConfig)) + ("default_env",)


def hub_discovery(config_file: str, user: str) -> tuple[DiscoveryConfig, str]:
    """The discovery settings and ``default_env`` of the hub's spawner for ``user`` under
    ``config_file``, configured as the hub configures it (see :mod:`.hubconfig`)."""
    settings = HubConfig.load(config_file).spawner_settings(HUB_SETTINGS, user)
    return DiscoveryConfig.of(SimpleNamespace(**settings)), settings["default_env"]


def _discovery(args) -> tuple[DiscoveryConfig, str]:
    """The hub's settings (or the defaults without ``--config``) with the command's overrides."""
    if args.config:
        config, default_env = hub_discovery(args.config, args.user)
    else:
        config, default_env = DiscoveryConfig(), ""
    overrides: dict = {}
    if args.shared_dir:
        overrides["shared_env_dirs"] = tuple(args.shared_dir)
    if args.user_dir:
        overrides["user_env_dirs"] = tuple(args.user_dir)
    if args.allow_venvs:
        overrides["allow_venvs"] = True
    return dataclasses.replace(config, **overrides), default_env


def _records(envs: list[CondaEnv]) -> list[dict]:
    return [
        {
            "name": env.name,
            "group": env.group,
            "prefix": env.prefix,
            "python_version": env.python_version,
            "activation_scripts": list(env.activate_scripts),
            "kernels": [
                {
                    "name": env.kernel_name(k),
                    "display_name": display_name(env, k),
                    "language": k.language,
                    "argv0": k.argv[0],
                }
                for k in env.kernels
            ],
        }
        for env in envs
    ]


def _preselected(envs: list[CondaEnv], default_env: str) -> str | None:
    names = [e.name for e in envs]
    if default_env in names:
        return default_env
    return names[0] if names else None


def format_table(
    user: UserContext,
    envs: list[CondaEnv],
    preselected: str | None,
    skipped: Sequence[Skip] = (),
) -> str:
    lines = [f"Environments offered to {user.name} (uid {user.uid}, home {user.home}):"]
    if not envs:
        lines.append("  (none)")
    for env in envs:
        mark = "*" if env.name == preselected else " "
        lines.append(f"{mark} {env.name}  [{env.summary()}]  {env.prefix}")
        for k in env.kernels:
            lines.append(f"      kernel {env.kernel_name(k)}: {display_name(env, k)}")
    if preselected:
        lines.append(f"* = preselected when {user.name} has not chosen yet")
    if skipped:
        lines.append("Not offered (refused or skipped):")
        lines.extend(f"  {skip.path}: {skip.reason}" for skip in skipped)
    return "\n".join(lines)


def _cmd_envs(args) -> int:
    try:
        config, default_env = _discovery(args)
    except HubConfigError as e:  # a broken config file: say so, no traceback
        print(e, file=sys.stderr)
        return 1
    try:
        user = UserContext.from_passwd(args.user)
    except KeyError:
        print(f"no system user {args.user!r}", file=sys.stderr)
        return 1
    found = scan(config, user)
    envs = found.envs
    preselected = _preselected(envs, default_env)
    if args.json:
        out = {
            "user": args.user,
            "preselected": preselected,
            "environments": _records(envs),
            "skipped": [
                {"path": s.path, "reason": s.reason, "kind": s.kind} for s in found.skipped
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        print(format_table(user, envs, preselected, found.skipped))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``envs USER`` to an argparse ``subparsers`` object (sets ``func``)."""
    p = subparsers.add_parser(
        "envs",
        help="show the conda environments and kernels a user would be offered",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("user", metavar="USER", help="system user name")
    p.add_argument("--config", help="jupyterhub_config.py to read the spawner settings from")
    p.add_argument(
        "--shared-dir",
        action="append",
        metavar="DIR",
        help="shared env dir (repeatable; overrides the config)",
    )
    p.add_argument(
        "--user-dir",
        action="append",
        metavar="DIR",
        help="user env dir, ~ and {username} expanded for USER (repeatable; overrides the config)",
    )
    p.add_argument("--allow-venvs", action="store_true", help="also list plain virtualenvs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_envs)
    return p
