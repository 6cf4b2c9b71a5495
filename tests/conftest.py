"""Shared pytest settings. Unit tests live in tests/unit (fast, pure), end-to-end tests in tests/e2e."""

import sys
from pathlib import Path

# pyproject.toml sets --import-mode=importlib so that tests/unit/test_X.py and tests/e2e/test_X.py may
# share a basename; the helper modules next to the tests (harness, envs, fakes, ...) stay importable
# by name from these directories.
for _sub in ("e2e", "unit"):
    _path = str(Path(__file__).resolve().parent / _sub)
    if _path not in sys.path:
        sys.path.insert(0, _path)
