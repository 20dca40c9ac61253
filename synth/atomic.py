"""Atomic writes: a reader (or a crashed run) never sees a half-written file or directory."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

# mkstemp creates files 0600; give finished files the usual umask-derived mode instead.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    """Persist a rename: the directory entry lives in the parent's metadata."""
    with suppress(OSError):  # not supported everywhere (e.g. Windows)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write via a temp file in the same directory, fsync, then `os.replace` into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def recover_directory(final_dir: str | os.PathLike[str], *, remove_temp: bool = False) -> bool:
    """Finish what a killed `atomic_directory` swap left behind. Returns True if it restored.

    A kill between the swap's two renames leaves no `final_dir` and the previous complete
    directory under `.old-*`: move it back. A kill after the swap leaves a stale `.old-*`
    beside the new directory: delete it. `remove_temp` also deletes `.tmp-*` directories of
    interrupted writers; only pass it while holding the lock that excludes other writers.
    """
    final = Path(final_dir)
    if not final.parent.is_dir():
        return False
    olds = sorted(
        final.parent.glob(f".old-{final.name}-*"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    restored = False
    if olds and not (final.exists() or final.is_symlink()):
        with suppress(OSError):
            os.rename(olds.pop(0), final)
            _fsync_dir(final.parent)
            restored = True
    for old in olds:
        _remove(old)
    if remove_temp:
        for tmp in final.parent.glob(f".tmp-{final.name}-*"):
            _remove(tmp)
    return restored


@contextmanager
def atomic_directory(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temp dir next to `final_dir`; on success it replaces `final_dir`.

    The swap is two renames (old -> `.old-*`, tmp -> final), so a crash leaves either the
    previous complete directory (possibly under its `.old-*` name, which `recover_directory`
    moves back) or the new one, never a mix.
    On an exception the temp dir is deleted and `final_dir` is left untouched.
    """
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(final)  # a previous writer killed mid-swap: put its old copy back first
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    old: Path | None = None
    try:
        if final.exists() or final.is_symlink():
            old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:12]}")
            os.rename(final, old)
        os.rename(tmp, final)
    except BaseException:
        if old is not None and not final.exists():
            with suppress(OSError):
                os.rename(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        _remove(old)
