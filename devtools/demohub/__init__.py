"""The demo hub behind ``bash scripts/demo.sh`` (run by ``devtools/demo.py``).

- :mod:`.layout`: where everything is (ports, URLs, paths), one frozen record;
- :mod:`.people`: the demo's identities, its userlist and who is refused and why;
- :mod:`.config`: the hub's ``jupyterhub_config.py`` and JupyterLab's default settings (text only);
- :mod:`.envs`: the shared conda-layout environments and alice's own (venv + pip, cached);
- :mod:`.accounts`: alice's system account made before the hub starts, as the hub would make it;
- :mod:`.banner`: what is where, printed once the hub runs;
- :mod:`.check`: ``--check``, every part verified over HTTP as a person would use it.

Development tooling, not part of the package: it imports the installed package, never the tests.
"""
