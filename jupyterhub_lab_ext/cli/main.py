"""``jupyterhub-lab-ext``: the admin command line.

A small argparse dispatcher. Each area registers its subcommands with a
``register(subparsers)`` function listed in :data:`REGISTRARS`; every leaf parser sets
``func`` (``args -> exit code``). To add an area, write ``register`` in your module and add
one line to :data:`REGISTRARS`. A subcommand that reads the hub's settings takes
``--config jupyterhub_config.py`` and reads it through :mod:`.hubconfig`, as the hub would.

- ``userlist check|show`` (:mod:`.userlist`): validate and inspect a userlist file;
- ``homes list|sync-template|lock|unlock|archive`` (:mod:`.homes`): the system users' homes;
- ``envs USER`` (:mod:`.envs`): the conda environments and kernels a user would be offered.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from jupyterhub_lab_ext import __version__
from jupyterhub_lab_ext.cli import envs, homes, userlist

#: One ``register(subparsers)`` per area; add yours here.
REGISTRARS: list[Callable[[argparse._SubParsersAction], object]] = [
    userlist.register,
    homes.register,
    envs.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyterhub-lab-ext", description="Admin commands of jupyterhub-lab-ext."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
