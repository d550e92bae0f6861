"""Atomic file writing: write to a temporary name beside the target, then rename.

A crash never leaves a file (or folder) under its final name that looks complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from mamakit.errors import InputError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def tmp_name(path: Path) -> Path:
    """A hidden temporary sibling of ``path`` that keeps its extension (so codecs can infer it)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.stem}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj, indent: int = 2) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=indent, sort_keys=False) + "\n").encode())


def check_writable_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Check, before any work starts, that ``path`` (a file or folder to create) can be written.

    The parent folder must exist and be writable; an existing ``path`` that is a file where a
    folder is expected (or vice versa) is reported by the caller.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{what} folder {parent} does not exist: create it first or choose another path")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{what} path {path} is not writable: choose a folder you can write to")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} path {path} is not writable: choose a folder you can write to")
    return path


def fresh_tmpdir(parent: str | os.PathLike, prefix: str = ".tmp-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
