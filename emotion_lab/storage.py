"""Writes that fail for lack of space, named as such: the disk is full, a quota is reached, or
a file outgrows the process's file-size limit (``ulimit -f``).

Not every writer says so: ``torch.save`` reports a failed write as an opaque stream error. So a
failed write is also judged by the sizes it needed against the free space and the limit.
"""

from __future__ import annotations

import errno
import resource
import shutil
from collections.abc import Sequence
from pathlib import Path

# Errors of a write that could not get the space it needed.
_SPACE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "a file outgrew the file-size limit (ulimit -f)",
}
# How Rust and C++ writers (safetensors, torch) spell those errors in their messages.
_SPACE_WORDS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
}


def megabytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _space_error(error: BaseException) -> tuple[int, str | None] | None:
    """The space errno in ``error`` or its causes, and the file it names, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _SPACE_ERRNOS:
            return seen.errno, seen.filename
        for words, code in _SPACE_WORDS.items():
            if words in str(seen):
                return code, None
        seen = seen.__cause__ or seen.__context__
    return None


def _file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _why(code: int, folder: Path) -> str:
    limit = _file_size_limit()
    if code == errno.EFBIG and limit is not None:
        return f"{_SPACE_ERRNOS[code]}, which is {megabytes(limit)}"
    return f"{_SPACE_ERRNOS[code]} ({megabytes(free_bytes(folder))} free there)"


def space_problem(error: BaseException, folder: Path, file_sizes: Sequence[int] = ()) -> str | None:
    """Why a write of files of ``file_sizes`` bytes into ``folder`` failed, if it was for lack
    of space; None for any other failure."""
    found = _space_error(error)
    code = found[0] if found else None
    if code is None and file_sizes:
        limit = _file_size_limit()
        if free_bytes(folder) < sum(file_sizes):
            code = errno.ENOSPC
        elif limit is not None and limit < max(file_sizes):
            code = errno.EFBIG
    return None if code is None else _why(code, folder)


def describe_space_error(error: BaseException) -> str | None:
    """One line for a write anywhere that failed for lack of space; None for other errors."""
    found = _space_error(error)
    if found is None:
        return None
    code, filename = found
    where = Path(filename) if filename else Path.cwd()
    target = f"cannot write {filename}" if filename else "a write failed"
    return (
        f"{target}: {_why(code, where.parent if filename else where)}. Free space on that disk, "
        "then rerun the same command with resume=true (finished runs and the last checkpoint "
        "are kept)."
    )
