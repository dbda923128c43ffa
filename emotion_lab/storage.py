"""Writing files safely: every file is written whole or not at all (``replace_atomically``), and
writes that fail for lack of space are named as such: the disk is full, a quota is reached, or
a file outgrows the process's file-size limit (``ulimit -f``).

Not every writer says so: ``torch.save`` reports a failed write as an opaque stream error. So a
failed write is also judged by the sizes it needed against the free space and the limit.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# How Rust and C++ writers (safetensors, torch) spell those errors in their messages.
_SPACE_WORDS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
}


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write(tmp)`` to a temporary file beside it, then rename it into
    place: a reader, or a kill mid-write, sees the old file or the new one, never part of one.
    The temporary name holds the process id, so processes writing one file never share it; a
    failed write removes it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text_atomically(path: Path, text: str) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def megabytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass
class SpaceProblem:
    """Why a write lacked space, and what gives it back."""

    why: str
    remedy: str
    # Where the write went, when the error names it.
    filename: str | None = None
    # False when the disk has room and a per-file limit stopped the write.
    disk_full: bool = True


def _problem(code: int, folder: Path, largest: int | None, filename: str | None) -> SpaceProblem:
    limit = _file_size_limit()
    if code == errno.EFBIG:
        need = f"; a file needs about {megabytes(largest)}" if largest else ""
        return SpaceProblem(
            f"a file outgrew the file-size limit (ulimit -f) of "
            f"{megabytes(limit) if limit is not None else 'this filesystem'}",
            f"raise the limit (ulimit -f unlimited{need})",
            filename,
            disk_full=False,
        )
    quota = code == errno.EDQUOT
    return SpaceProblem(
        f"{'the disk quota is exceeded' if quota else 'no space left on the device'} "
        f"({megabytes(free_bytes(folder))} free there)",
        "free space on that disk" + (" (or raise the quota)" if quota else ""),
        filename,
    )


def _space_errno(error: BaseException) -> tuple[int, str | None] | None:
    """The space errno in ``error`` or its causes, and the file it names, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _SPACE_WORDS.values():
            return seen.errno, seen.filename
        for words, code in _SPACE_WORDS.items():
            if words in str(seen):
                return code, None
        seen = seen.__cause__ or seen.__context__
    return None


def space_problem(
    error: BaseException, folder: Path, file_sizes: Sequence[int] = ()
) -> SpaceProblem | None:
    """Why a write of files of ``file_sizes`` bytes into ``folder`` failed, if it was for lack
    of space; None for any other failure."""
    largest = max(file_sizes, default=None)
    found = _space_errno(error)
    if found is not None:
        return _problem(found[0], folder, largest, found[1])
    limit = _file_size_limit()
    if file_sizes and free_bytes(folder) < sum(file_sizes):
        return _problem(errno.ENOSPC, folder, largest, None)
    if largest is not None and limit is not None and limit < largest:
        return _problem(errno.EFBIG, folder, largest, None)
    return None


def describe_space_error(error: BaseException) -> str | None:
    """One line for a write anywhere that failed for lack of space; None for other errors."""
    found = _space_errno(error)
    if found is None:
        return None
    folder = Path(found[1]).parent if found[1] else Path.cwd()
    problem = _problem(found[0], folder, None, found[1])
    target = f"cannot write {problem.filename}" if problem.filename else "a write failed"
    return (
        f"{target}: {problem.why}. To go on, {problem.remedy}, then rerun the same command with "
        "resume=true (finished runs and the last checkpoint are kept)."
    )
