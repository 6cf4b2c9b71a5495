"""util.secretfile: the one helper for the secrets the package keeps in files."""

import logging
import os

import pytest

from jupyterhub_lab_ext.util.secretfile import read_or_create_secret

KEPT = "k" * 40


def test_missing_file_gets_a_new_private_secret(tmp_path, caplog):
    path = tmp_path / "secret"
    with caplog.at_level(logging.INFO):
        secret = read_or_create_secret(str(path))
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert path.read_text() == secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert secret not in caplog.text
    assert read_or_create_secret(str(path)) == secret  # kept across calls (and restarts)


def test_private_file_is_read_without_a_warning(tmp_path, caplog):
    path = tmp_path / "secret"
    path.write_text(KEPT + "\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert read_or_create_secret(str(path)) == KEPT
    assert caplog.records == []


@pytest.mark.parametrize(
    "mode", [0o640, 0o604, 0o620], ids=["group-read", "other-read", "group-write"]
)
def test_file_open_to_others_is_used_with_a_warning(tmp_path, caplog, mode):
    path = tmp_path / "secret"
    path.write_text(KEPT)
    path.chmod(mode)
    with caplog.at_level(logging.WARNING):
        assert read_or_create_secret(str(path)) == KEPT
    assert f"{path} is open to group or others (mode {mode:04o}): chmod 600 it" in caplog.text
    assert KEPT not in caplog.text


@pytest.mark.parametrize(
    "content", [b"", b"short", b"\xff" * 40], ids=["empty", "short", "not-text"]
)
def test_unusable_secret_is_replaced_privately(tmp_path, caplog, content):
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        secret = read_or_create_secret(str(path))
    assert len(secret) == 64 and path.read_text() == secret
    assert path.stat().st_mode & 0o777 == 0o600  # tightened, not left 0644 by O_TRUNC
    assert "holds no usable secret" in caplog.text


def test_unwritable_place_raises(tmp_path):
    missing_dir = tmp_path / "no" / "secret"
    with pytest.raises(OSError):
        read_or_create_secret(str(missing_dir))


def test_logger_is_the_callers(tmp_path, caplog):
    path = tmp_path / "secret"
    path.write_text(KEPT)
    os.chmod(path, 0o644)
    mine = logging.getLogger("caller-log")
    with caplog.at_level(logging.WARNING):
        read_or_create_secret(str(path), log=mine)
    assert [r.name for r in caplog.records] == ["caller-log"]
