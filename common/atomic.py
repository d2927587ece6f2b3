"""Atomic file and folder writes: a reader never sees a half-written artefact.

A file is written to a temporary name in the same folder, flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX). If the writer is
interrupted or raises (a full disk included), the temporary file is removed and
the previous version of the target is left exactly as it was.

Two forms: :func:`atomic_write` hands the writer an open file object;
:func:`atomic_path` hands it a temporary *path* with the target's suffix, for
writers that open files themselves (h5py, ``ase.io.write``, ``numpy.savez``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, mode: str = "w") -> Path:
    """Create ``path`` by calling ``write(fileobj)`` on a temporary file, then renaming it.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). Returns the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(target) as tmp:`` write the file ``tmp`` by any means; on leaving the block
    without an error ``tmp`` is fsynced and renamed to ``target``, on an error it is removed.

    ``tmp`` lies in the target's folder and ends with the target's suffixes (``.extxyz``, ``.h5``,
    ``.npz``), so writers that pick a format from the name pick the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path, data: bytes) -> Path:
    """Atomically write a binary file."""
    return atomic_write(path, lambda f: f.write(data), mode="wb")


def write_text(path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda f: f.write(text))


def write_json(path, data: Any, *, indent: int = 2, final_newline: bool = True) -> Path:
    """Atomically write ``data`` as JSON indented by ``indent`` (NumPy scalars and arrays converted),
    ending in a newline unless ``final_newline`` is false."""
    text = json.dumps(data, indent=indent, sort_keys=False, default=_json_default)
    return write_text(path, text + "\n" if final_newline else text)


def _json_default(obj):
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:  # numpy scalars and arrays
        return tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def replace_dir(partial: Path, final: Path) -> None:
    """Move a finished scratch folder ``partial`` into place as ``final``.

    The previous ``final`` is first renamed aside to ``final.old`` and deleted
    only after the new one is in place; :func:`recover_dir` puts it back if the
    process died between the two renames.
    """
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(final: Path) -> None:
    """Undo a :func:`replace_dir` that was interrupted between its two renames."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, final)
