"""Downloading registry files into the cache: progress, resume, hash check,
and nothing visible under the final name until it is complete and verified.

A download writes ``<file>.part`` beside its target. A transfer cut short is
resumed at once with an HTTP Range request (a few tries, then the next mirror);
a download stopped with Ctrl-C keeps its ``.part`` so the next fetch resumes
it. A file that fails for good (still short, or the wrong sha256) leaves
nothing behind. With no network, the error says which file to put where.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from .checkpoints import KnownModel, cache_path, missing_message
from .errors import CheckpointError

CHUNK = 1 << 16
TRIES_PER_URL = 3
USER_AGENT = "pixloom (model download)"


class _Short(Exception):
    """The server closed the connection before the whole file arrived."""


def _part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _hash_of(path: Path) -> "hashlib._Hash":
    h = hashlib.sha256()
    if path.exists():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h


def _transfer(url: str, part: Path, timeout: float, bar) -> None:
    """One request: append to ``part`` from its current size (Range), or start over
    when the server ignores the range. Raises _Short when the body ends early."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: we may already have it all
            return
        raise
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:
            have = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if bar is not None:
            total = (have + expected) if expected is not None else None
            bar.reset(total=total)
            bar.update(have)
        got = 0
        with open(part, "ab" if have else "wb") as out:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # reset or timeout mid-body
                    raise _Short(f"got {have + got} bytes, then {type(exc).__name__}") from exc
                if not block:
                    break
                out.write(block)
                got += len(block)
                if bar is not None:
                    bar.update(len(block))
        if expected is not None and got < expected:
            raise _Short(f"got {have + got} of {have + expected} bytes")


def download_url(urls, target: Path, *, sha256: Optional[str] = None, progress: bool = True,
                 timeout: float = 30.0, label: str = "") -> Path:
    """Download the first of ``urls`` that works into ``target`` (atomically)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(target)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                   desc=label or target.name, dynamic_ncols=True, leave=False)
    errors = []
    try:
        for url in urls:
            done = False
            for _ in range(TRIES_PER_URL):
                try:
                    _transfer(url, part, timeout, bar)
                    done = True
                    break
                except _Short as exc:  # resume at once from what arrived
                    errors.append((url, f"transfer cut short ({exc})"))
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    errors.append((url, str(getattr(exc, "reason", None) or exc)))
                    break
            if not done or not part.exists():
                _discard(part)  # start clean on the next address
                continue
            if sha256:
                actual = _hash_of(part).hexdigest()
                if actual != sha256:
                    _discard(part)
                    errors.append((url, f"wrong sha256 {actual[:16]}... (expected {sha256[:16]}...)"))
                    continue
            os.replace(part, target)
            return target
    except KeyboardInterrupt:
        raise  # keep the .part: the next fetch resumes it
    except BaseException:
        _discard(part)
        raise
    finally:
        if bar is not None:
            bar.close()
    _discard(part)
    raise _DownloadFailed(errors)


class _DownloadFailed(CheckpointError):
    def __init__(self, errors):
        self.errors = errors
        super().__init__("; ".join(f"{url}: {why}" for url, why in errors[-3:]) or "no address to download from")

    @property
    def offline(self) -> bool:
        """Every address failed to connect (rather than sending a bad file)."""
        return all(("cut short" not in why and "sha256" not in why) for _, why in self.errors)


def _discard(part: Path) -> None:
    try:
        part.unlink()
    except FileNotFoundError:
        pass


def download_known(model: KnownModel, role: str, *, progress: bool = True, timeout: float = 30.0,
                   urls=None) -> Path:
    """Fetch one registry file into the cache (``urls`` overrides the registry's, for tests)."""
    known = model.files[role]
    target = cache_path(model, role)
    try:
        return download_url(urls or known.urls, target, sha256=known.sha256, progress=progress,
                            timeout=timeout, label=f"{model.name} {known.filename}")
    except _DownloadFailed as exc:
        if exc.offline:
            why = exc.errors[0][1] if exc.errors else "no address"
            raise CheckpointError(missing_message(model, role, f"no network? {why[:100]}")) from exc
        last = exc.errors[-1][1] if exc.errors else "failed"
        raise CheckpointError(f"{model.name}: download of {known.filename} failed ({last}); nothing was kept; "
                              f"retry, or put the file at {target}") from exc
