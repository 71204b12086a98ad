"""Checks of output and work paths before any work starts, and OSError messages for the CLI.

Every command checks its destinations up front (a file where a directory is expected, a directory
that does not exist or cannot be written, a full file system), so that a bad path fails in a second,
not after minutes of synthesis or simulation. The checks create and remove one empty probe file:
write permission bits say nothing to root, and a read-only mount shows only when one writes.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import UserError

__all__ = ["check_output_dir", "check_output_file", "describe_os_error", "write_error"]


def _probe(directory: Path, option: str) -> None:
    """Create and remove one empty file in ``directory``: ``UserError`` naming ``option`` if that fails."""
    try:
        fd, name = tempfile.mkstemp(prefix=".nxfp-probe-", dir=directory)
    except OSError as exc:
        raise UserError(f"{option}: cannot write in {directory}: {_reason(exc)}") from None
    os.close(fd)
    os.unlink(name)
    try:
        st = os.statvfs(directory)
    except OSError:
        return
    if st.f_bavail == 0 and st.f_blocks > 0:
        raise UserError(f"{option}: cannot write in {directory}: no space left on device")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def check_output_file(path: Path, option: str, *, force: bool = False, suffix: str | None = None) -> None:
    """``path`` can be written as a new file (or replaced, with ``force``): its directory exists, is a
    directory and is writable; ``path`` is not a directory. ``option`` (``--output``) names the argument."""
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise UserError(f"{option}: {path}: expected a {suffix} file name")
    if path.is_dir():
        raise UserError(f"{option}: {path} is a directory; expected a file name")
    if path.exists() or path.is_symlink():
        if not force:
            raise UserError(f"{option}: {path} exists; pass --force to replace it")
        if not path.is_file():
            raise UserError(f"{option}: {path} exists and is not a regular file")
    parent = path.absolute().parent
    if not parent.exists():
        raise UserError(f"{option}: directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise UserError(f"{option}: {parent} is not a directory")
    _probe(parent, option)


def check_output_dir(path: Path, option: str) -> None:
    """``path`` is a writable directory, or can be created (its nearest existing ancestor is a writable
    directory). Nothing is created here."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option}: {path} exists and is not a directory")
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise UserError(f"{option}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option}: {existing} is not a directory, so {path} cannot be created")
    _probe(existing, option)


def write_error(exc: OSError, path: Path, option: str | None = None) -> UserError:
    """A ``UserError`` for a failed write of ``path`` (a full disk, a file size limit, a vanished directory)."""
    reason = "file too large (file size limit reached)" if exc.errno == errno.EFBIG else _reason(exc)
    return UserError(f"{option + ': ' if option else ''}cannot write {path}: {reason}; nothing was written")


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError`` that escaped a command: the file and the reason, no traceback."""
    what = exc.filename if exc.filename is not None else None
    reason = _reason(exc)
    if exc.errno == errno.EFBIG:
        reason = "file too large (file size limit reached)"
    return f"{what}: {reason}" if what is not None else reason
