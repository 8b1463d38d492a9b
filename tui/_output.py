"""Writing an export where the user asked, and nowhere else.

``export -o PATH`` writes a new regular file, created with the user's umask,
beside the target first and then linked into place, so a failed export leaves
nothing half-written and an existing file is never replaced behind the user's
back: it needs ``--force``. A symlink, a directory, a device, a FIFO or a socket
at the path is refused even with ``--force`` (as root, replacing ``/dev/full``
would break the machine; following a symlink would write wherever it points).
``-o -`` is standard output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["OutputRefused", "check_target", "write_file"]


class OutputRefused(Exception):
    """The path cannot take the export; ``str()`` is the one line to print."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def check_target(path: Path, *, force: bool, directory: bool = False) -> bool:
    """Refuse what may not be written over; True when something (allowed) is already there.

    ``directory``: the export is a folder (Parquet): an existing directory is allowed
    with ``force``, anything else at the path never.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputRefused(f"{path}: cannot write: {exc.strerror or exc}") from None
    wanted = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not wanted:
        instead = "a new folder" if directory else "a new file"
        raise OutputRefused(f"{path} is {_kind(st.st_mode)}; export to {instead} instead")
    if not force:
        raise OutputRefused(f"{path} already exists; pass --force to replace it")
    return True


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_file(path: Path, data: bytes, *, force: bool) -> None:
    """``data`` as the file at ``path``: whole or not at all, never over what :func:`check_target` refuses."""
    check_target(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file 0600; an export is the user's file like any other.
        os.chmod(tmp, _umask_mode())
        if force and check_target(path, force=True):
            os.replace(tmp, path)  # replaces the entry itself: a link swapped in is not followed
            return
        try:
            # A hard link fails if anything appeared at the path since the check: no race.
            os.link(tmp, path)
        except FileExistsError:
            check_target(path, force=force)
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            check_target(path, force=force)  # a file system without hard links
            os.replace(tmp, path)
            return
        os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
