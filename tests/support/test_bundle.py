"""The bundle archive: written even when the settings are broken, logs from the rotated files."""

from __future__ import annotations

import json
import stat
import tarfile
from pathlib import Path

import pytest

from bastion.observability.redact import REDACTED
from bastion.support.bundle import write_bundle


def _read(path: Path) -> dict[str, str]:
    with tarfile.open(path) as archive:
        return {
            member.name.removeprefix("bastion-support/"): archive.extractfile(member).read().decode()  # type: ignore[union-attr]  # members are files
            for member in archive.getmembers()
        }


def _log(directory: Path, lines: dict[str, list[str]]) -> Path:
    directory.mkdir()
    for name, content in lines.items():
        (directory / name).write_text("".join(line + "\n" for line in content))
    return directory / "bastion.log"


def test_settings_that_do_not_validate_still_give_a_bundle_with_the_reason_and_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = _log(tmp_path / "logs", {"bastion.log": ['{"event": "boot", "password": "pw-1"}']})
    monkeypatch.setenv("BASTION_PORT", "not-a-port")
    monkeypatch.setenv("BASTION_ADMIN_PASSWORD", "admin-password-2")
    monkeypatch.setenv("BASTION_LOG_FILE", str(log_file))
    bundle = write_bundle(tmp_path / "out" / "bundle.tar.gz", log_lines=10)
    files = _read(bundle.path)
    config = json.loads(files["config.json"])
    assert config["error"] == ["port: Input should be a valid integer, unable to parse string as an integer"]
    assert "BASTION_ADMIN_PASSWORD" in config["environment"]
    assert json.loads(files["health.json"])["settings"]["status"] == "failed"
    assert json.loads(files["logs.jsonl"]) == {"event": "boot", "password": REDACTED}
    assert bundle.summary == "settings failed; 1 log line"
    assert not any("pw-1" in text or "admin-password-2" in text for text in files.values())
    assert stat.S_IMODE(bundle.path.stat().st_mode) == 0o600


def test_a_bundle_written_over_a_readable_file_is_private_and_a_symlink_is_not_followed(tmp_path: Path) -> None:
    out = tmp_path / "bundle.tar.gz"
    out.write_bytes(b"old")
    out.chmod(0o644)
    assert stat.S_IMODE(write_bundle(out, log_lines=0).path.stat().st_mode) == 0o600
    elsewhere = tmp_path / "elsewhere"
    link = tmp_path / "link.tar.gz"
    link.symlink_to(elsewhere)
    with pytest.raises(OSError):
        write_bundle(link, log_lines=0)
    assert not elsewhere.exists()


def test_the_last_log_lines_come_from_the_rotated_files_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = _log(
        tmp_path / "logs",
        {
            "bastion.log.2": ['{"n": 1}', '{"n": 2}'],
            "bastion.log.1": ['{"n": 3}', '{"n": 4}'],
            "bastion.log": ['{"n": 5}'],
            "bastion.log.old": ['{"n": 0}'],  # not one of the rotation's files
        },
    )
    monkeypatch.setenv("BASTION_LOG_FILE", str(log_file))
    monkeypatch.setenv("BASTION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}")
    files = _read(write_bundle(tmp_path / "bundle.tar.gz", log_lines=4).path)
    assert [json.loads(line)["n"] for line in files["logs.jsonl"].splitlines()] == [2, 3, 4, 5]
    manifest = json.loads(files["manifest.json"])
    assert (manifest["log_lines_requested"], manifest["log_lines_included"]) == (4, 4)
    assert set(manifest["files"]) == set(files)


def test_without_a_log_file_the_manifest_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_LOG_FILE", raising=False)
    monkeypatch.setenv("BASTION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}")
    files = _read(write_bundle(tmp_path / "bundle.tar.gz", log_lines=10).path)
    assert files["logs.jsonl"] == ""
    assert any("BASTION_LOG_FILE is not set" in note for note in json.loads(files["manifest.json"])["notes"])
