"""Writing outputs safely: output folders that are folders, and atomic writes that survive a full disk.

Every file vidssl writes that a later run reads (checkpoints, the exported encoder, feature-cache
entries, manifests, reports) goes through :func:`atomic_write`: the data goes to ``.NAME.tmp`` next
to the target and is renamed over it only once complete, so a kill leaves the previous file intact.
When the write fails (a full disk, a quota, a file-size limit) the partial temporary file is
removed — it would otherwise keep the disk full — the previous file is kept, and the error is one
line that says so: ``no space left on device (needed ~N MB at PATH)``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from vidssl.errors import UserError

__all__ = ["atomic_write", "output_dir", "run_dir_lock", "tensor_bytes", "DiskFull"]


class DiskFull(UserError):
    """A write failed for lack of space (or a quota / file-size limit); nothing partial was left."""


def output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a directory that exists and is writable (created if needed); a one-line
    :class:`UserError` when it is a file or cannot be created or written."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {path} is a file, not a directory; give a directory (it is created if needed)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot create the directory ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: the directory is not writable")
    return out


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors and arrays inside ``obj`` (nested dicts/lists): about the size of its file."""
    if hasattr(obj, "nbytes") and not isinstance(obj, (str, bytes)):
        try:
            return int(obj.nbytes)
        except TypeError:
            pass
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return int(obj.element_size() * obj.numel())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _is_space_error(exc: BaseException, directory: Path, needed: int) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    # torch.save reports a failed write from C++ ("PytorchStreamWriter failed writing file ...:
    # file write failed", inline_container.cc) without an errno: ask the file system.
    text = str(exc).lower()
    if "write failed" in text or "no space" in text or "inline_container" in text:
        return True
    return False


def _size_limited(needed: int) -> bool:
    """Whether a file-size limit (``ulimit -f``) is below ``needed`` bytes."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return soft != resource.RLIM_INFINITY and needed > soft
    except (ImportError, OSError, ValueError):
        return False


@contextlib.contextmanager
def run_dir_lock(out: Path, hold: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.vidssl.lock`` while the block runs (``hold=False``: a no-op).

    Two processes training into one run directory interleave their checkpoints and metrics and
    neither notices (the "already holds a run" check sees no checkpoint while both start). The
    lock is ``flock``: the kernel releases it when the holder dies, so a killed run never leaves a
    stale lock and ``--resume`` / torchrun restarts take it again.
    """
    if not hold:
        yield
        return
    import fcntl

    handle = open(out / ".vidssl.lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "pid unknown"
            raise UserError(f"{out} is in use by another running vidssl process ({holder}): two runs writing one "
                            "directory would mix their checkpoints. Wait for it to finish, stop it, or choose "
                            "another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], needed: int = 0, what: str = "") -> Path:
    """Write ``path`` through ``write(tmp_path)`` then rename; on a failed write remove the partial file,
    keep the previous one and raise :class:`DiskFull` when space ran out (``needed``: expected bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if _is_space_error(exc, path.parent, needed):
            kept = f"the previous {path.name} is kept" if path.exists() else f"no earlier {path.name} existed"
            size = f"~{max(needed, 1) / 2**20:.0f} MB" if needed >= 2**20 else f"~{max(needed, 1) / 1024:.0f} kB"
            efbig = isinstance(exc, OSError) and exc.errno == errno.EFBIG
            reason = "file size limit exceeded" if efbig or _size_limited(needed) else "no space left on device"
            fix = "raise the file-size limit (ulimit -f)" if "limit" in reason else "free space there"
            raise DiskFull(f"{reason} (needed {size} at {path}) while writing {what or path.name}; the partial file "
                           f"was removed and {kept}. {fix.capitalize()} and run the command again") from None
        raise
    return path
