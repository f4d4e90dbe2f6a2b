"""Crash-safe files: atomic writes, checksummed ``torch.save`` checkpoints, ``weights_only`` loads.

Every file nasforge writes that must survive a crash (checkpoints, JSON results) is written to a temporary name in
the same directory, flushed and fsynced, then renamed over the target, so a reader sees the old file or the new
one, never half of one. Checkpoints are identified by their SHA-256, which the trial store records; a checkpoint
whose checksum does not match is rejected.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import torch

from .errors import DataError, InvalidValue

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "sha256_file", "save_checkpoint",
           "load_checkpoint", "CheckpointError"]


class CheckpointError(DataError):
    """A checkpoint is missing, unreadable or does not match its recorded checksum."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and checkpoints are ordinary readable files
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: fsync the folder entry (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], obj: Any) -> str:
    """``torch.save`` ``obj`` (tensors, dicts, lists, numbers, strings only) atomically; returns its SHA-256."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | os.PathLike[str], sha256: str | None = None,
                    map_location: str | torch.device | None = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``; with ``sha256`` reject a file whose checksum differs."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint: file {str(p)!r} does not exist")
    data = p.read_bytes()
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise CheckpointError(f"checkpoint {str(p)!r}: sha256 {got[:12]}... does not match the recorded "
                                  f"{sha256[:12]}...; the file is corrupt or was replaced")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors of many kinds
        raise CheckpointError(f"checkpoint {str(p)!r}: cannot be loaded ({type(exc).__name__}: {exc})"[:300]) from None


def lock_folder(folder: str | os.PathLike[str]) -> IO[str]:
    """Take an exclusive ``flock`` on ``folder/.lock`` (created with the folder) so that one process at a time
    writes a run folder; returns the open file (closing it releases the lock). A folder another process holds is
    a one-line :class:`~nasforge.errors.InvalidValue`."""
    import fcntl

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    fh = open(path / ".lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise InvalidValue("run folder", str(path), "a folder no other nasforge process is using "
                                                    "(another search, resume or training holds it)") from None
    return fh
