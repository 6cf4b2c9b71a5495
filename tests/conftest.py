"""Shared pytest settings. Unit tests live in tests/unit (fast, pure), end-to-end tests in tests/e2e."""

import os
import shutil
import sys
from pathlib import Path

import pytest

# pyproject.toml sets --import-mode=importlib so that tests/unit/test_X.py and tests/e2e/test_X.py may
# share a basename; the helper modules next to the tests (harness, envs, fakes, ...) stay importable
# by name from these directories.
for _sub in ("e2e", "unit", "support"):
    _path = str(Path(__file__).resolve().parent / _sub)
    if _path not in sys.path:
        sys.path.insert(0, _path)

# Under CI, property tests explore the same examples on every run (a failure is reproducible and a
# rare example cannot make one submission red and the next green); locally they explore anew.
try:
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    if os.environ.get("CI"):
        _hyp_settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass


@pytest.fixture
def trusted_tmp_path():
    """Like ``tmp_path``, but in a directory that only root can change, up to ``/``: shared conda
    envs built in it pass the package's trust rule (under /tmp, writable by everyone, they do not).
    Tests run as root."""
    from envs import trusted_dir

    path = trusted_dir("unit-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
