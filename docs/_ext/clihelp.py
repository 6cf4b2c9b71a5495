"""``clihelp``: put the ``--help`` output of a command into the docs at build time.

MyST usage::

    ```{clihelp} jupyterhub_lab_ext.cli.main userlist check --help
    ```

The argument is a module run with ``python -m`` (the interpreter building the docs, from the
repository root) followed by its arguments. A non-zero exit is a build warning, so with
``-W`` a broken command fails the docs build instead of publishing stale text.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


class CliHelp(SphinxDirective):
    required_arguments = 1
    final_argument_whitespace = True
    has_content = False

    def run(self):
        argv = shlex.split(self.arguments[0])
        env = dict(os.environ, COLUMNS="96", PYTHONPATH=str(REPO), NO_COLOR="1")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", *argv],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            logger.warning("clihelp: %s: %s", " ".join(argv), e, location=self.get_location())
            return []
        if proc.returncode != 0:
            logger.warning(
                "clihelp: python -m %s exited with %s: %s",
                " ".join(argv),
                proc.returncode,
                proc.stderr.strip()[-500:],
                location=self.get_location(),
            )
            return []
        text = proc.stdout.rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("clihelp", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
