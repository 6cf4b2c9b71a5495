"""Shared pytest settings. Unit tests live in tests/unit (fast, pure), end-to-end tests in tests/e2e."""

import os
import sys
from pathlib import Path

# pyproject.toml sets --import-mode=importlib so that tests/unit/test_X.py and tests/e2e/test_X.py may
# share a basename; the helper modules next to the tests (harness, envs, fakes, ...) stay importable
# by name from these directories.
for _sub in ("e2e", "unit"):
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
