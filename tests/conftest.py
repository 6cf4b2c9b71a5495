"""Shared pytest settings. Unit tests live in tests/unit (fast, pure), end-to-end tests in tests/e2e."""
