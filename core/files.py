"""Writing outputs so that no file is ever half-written under its final name,
and two runs into one folder never overwrite each other's files."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import OutputError


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return exc.strerror or str(exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's own 0600 is too private


def _write_temp(folder: Path, name: str, write) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=str(folder))
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        write(Path(tmp))
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write) -> Path:
    """Write ``path`` via ``write(tmp_path)`` into a temporary name, then rename:
    replaces an older ``path`` (for state files and the like)."""
    path = Path(path)
    try:
        tmp = _write_temp(path.parent, path.name, write)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_describe(exc)}") from exc
    return path


def write_new(folder: Path, stem: str, suffix: str, write) -> Path:
    """Write a new file ``stem{suffix}`` (or ``stem-2{suffix}``, ...) in ``folder``
    without ever replacing an existing file: write a temporary file, then
    hard-link it to the first free name (atomic, fails if the name exists)."""
    folder = Path(folder)
    try:
        tmp = _write_temp(folder, stem + suffix, write)
    except OSError as exc:
        raise OutputError(f"cannot write {folder / (stem + suffix)}: {_describe(exc)}") from exc
    try:
        for n in range(1, 100000):
            target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    # no hard links here: fall back to an exclusive create + rename
                    try:
                        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    except FileExistsError:
                        continue
                    os.close(fd)
                    os.replace(tmp, target)
                    return target
                raise OutputError(f"cannot write {target}: {_describe(exc)}") from exc
        raise OutputError(f"cannot write {folder / (stem + suffix)}: no free file name")
    finally:
        Path(tmp).unlink(missing_ok=True)


def make_new_dir(folder: Path, stem: str, suffix: str = "") -> Path:
    """Create a new folder ``stem{suffix}`` (or ``stem-2{suffix}``...) that no other run uses."""
    for n in range(1, 100000):
        target = Path(folder) / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        try:
            target.mkdir(parents=True)
            return target
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create {target}: {_describe(exc)}") from exc
    raise OutputError(f"cannot create a folder for {stem} in {folder}")


def ensure_output_dir(folder: Path, what: str = "output.dir") -> Path:
    """Create ``folder`` if needed and check, before any work is done, that files
    can be created in it: a run must not compute for minutes and then find that
    it cannot save its result."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=str(folder)):
            pass
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutputError(f"{what} {folder}: cannot create it (a file is in the way: {exc.filename})") from exc
    except OSError as exc:
        raise OutputError(f"{what} {folder}: cannot write there ({_describe(exc)})") from exc
    return folder
