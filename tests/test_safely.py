"""safely: files replaced whole."""

import pytest

import safely


def test_a_failed_text_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """write_text (JSON outputs) that fails midway keeps the old file and removes its temporary."""
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safely.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        safely.write_text(path, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and path.read_text() == "old"
