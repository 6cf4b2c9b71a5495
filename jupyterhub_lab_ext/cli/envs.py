"""``jupyterhub-lab-ext envs USER``: the environments and kernels that USER would be offered.

Runs the same discovery as the conda-kernel spawner (file system only, nothing from the envs is
run), with the settings of ``--config jupyterhub_config.py`` or the options given here. Run it as
root (like the hub) to see another user's envs. Environments it found but would not offer are
listed after them with the reason (an unsafe shared directory, another owner, no kernel, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig, UserContext, scan
from jupyterhub_lab_ext.kernels.env_prefix import CondaEnv
from jupyterhub_lab_ext.kernels.env_skips import Skip
from jupyterhub_lab_ext.kernels.kernelspec import display_name

_SPAWNER_NAMES = {
    "conda-kernel": "LocalCondaKernelSpawner",
    "conda-kernel-docker": "CondaKernelDockerSpawner",
    "conda-kernel-swarm": "CondaKernelSwarmSpawner",
}


def spawner_settings(config_file: str) -> dict:
    """The discovery settings (env dirs, owners, flags) and default_env from a hub config.

    The config is applied to the configured conda-kernel spawner class exactly as the hub does
    (``c.Spawner``, ``c.CondaKernelSpawner``, ``c.LocalCondaKernelSpawner``, ... sections).
    """
    from traitlets.config.loader import PyFileConfigLoader

    loader = PyFileConfigLoader(os.path.basename(config_file), os.path.dirname(config_file) or ".")
    cfg = loader.load_config()
    cls_name = "LocalCondaKernelSpawner"
    configured = cfg.get("JupyterHub", {}).get("spawner_class")
    if isinstance(configured, str):
        cls_name = _SPAWNER_NAMES.get(configured, configured.rsplit(".", 1)[-1])
    elif isinstance(configured, type):
        cls_name = configured.__name__
    if cls_name in ("CondaKernelDockerSpawner", "CondaKernelSwarmSpawner"):
        from jupyterhub_lab_ext.spawner import docker as docker_spawner

        cls = getattr(docker_spawner, cls_name)
    else:
        from jupyterhub_lab_ext.spawner.local import LocalCondaKernelSpawner as cls
    spawner = cls(config=cfg)
    return {
        "shared_env_dirs": list(spawner.shared_env_dirs),
        "user_env_dirs": list(spawner.user_env_dirs),
        "allow_venvs": spawner.allow_venvs,
        "read_environments_txt": spawner.read_environments_txt,
        "shared_env_owners": list(spawner.shared_env_owners),
        "default_env": spawner.default_env,
    }


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
        settings = spawner_settings(args.config) if args.config else {}
    except Exception as e:  # a broken config file: say so, no traceback
        print(f"cannot read {args.config}: {e}", file=sys.stderr)
        return 1
    if args.shared_dir:
        settings["shared_env_dirs"] = args.shared_dir
    if args.user_dir:
        settings["user_env_dirs"] = args.user_dir
    if args.allow_venvs:
        settings["allow_venvs"] = True
    config = DiscoveryConfig(
        shared_env_dirs=tuple(settings.get("shared_env_dirs", DiscoveryConfig.shared_env_dirs)),
        user_env_dirs=tuple(settings.get("user_env_dirs", DiscoveryConfig.user_env_dirs)),
        read_environments_txt=settings.get("read_environments_txt", True),
        allow_venvs=settings.get("allow_venvs", False),
        shared_env_owners=tuple(settings.get("shared_env_owners", ())),
    )
    try:
        user = UserContext.from_passwd(args.user)
    except KeyError:
        print(f"no system user {args.user!r}", file=sys.stderr)
        return 1
    found = scan(config, user)
    envs = found.envs
    preselected = _preselected(envs, settings.get("default_env", ""))
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
