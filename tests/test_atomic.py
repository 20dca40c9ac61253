"""Atomic writes leave either the old complete content or the new one, never a mix."""

from __future__ import annotations

import pytest

from synth.atomic import atomic_directory, atomic_write_bytes, atomic_write_text


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_write_file(tmp_path):
    atomic_write_text(tmp_path / "a" / "f.txt", "one")
    atomic_write_bytes(tmp_path / "a" / "f.txt", b"two")
    assert (tmp_path / "a" / "f.txt").read_bytes() == b"two"
    assert _leftovers(tmp_path / "a") == []


def test_failure_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-")
        (tmp / "part").write_text("half")
        raise RuntimeError("boom")
    assert not final.exists()
    assert _leftovers(tmp_path) == []


def test_existing_dir_kept_on_failure_replaced_on_success(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as tmp:
        (tmp / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert (final / "old.txt").read_text() == "old"

    with atomic_directory(final) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (final / "old.txt").exists()  # untouched until the body succeeds
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert _leftovers(tmp_path) == []
