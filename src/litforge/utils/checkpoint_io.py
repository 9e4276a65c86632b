"""Checkpoint files that a kill at any moment leaves whole: the old file or the new one, never a part.

Lightning's TorchCheckpointIO writes through an fsspec transaction whose temporary file is made by
`tempfile.mkstemp()`, in `$TMPDIR`, and moved into place with `shutil.move`: where `$TMPDIR` is
another file system than the run directory that move is a copy, which a kill truncates, and a
killed save leaves its temporary in `$TMPDIR`. Here the temporary sits beside the checkpoint, is
fsynced and renamed over it with `os.replace` (atomic on POSIX file systems), and temporaries whose
writer is gone are removed when a save or a load next touches their directory.
"""

import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

# .<checkpoint name>.tmp-<host>-<pid>: hidden, and naming the process that writes it
_TEMPORARY = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)$")


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries in `folder` left by saves killed part-way: those written on this
    machine by a process that no longer runs (a writer on another host cannot be checked: kept)."""
    host, removed = socket.gethostname(), []
    for path in folder.glob(".*.tmp-*"):
        match = _TEMPORARY.match(path.name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of a killed checkpoint save in %s", len(removed), folder)
    return removed


def _is_plain_path(path: Any) -> bool:
    # a URL (s3://, file://, ...) goes through Lightning's fsspec code as before
    return "://" not in str(path)


def _fsync_directory(folder: Path) -> None:
    # the rename itself must reach the disk too, or a power cut may bring the old entry back
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves write a temporary in the checkpoint's own directory,
    fsync it and `os.replace` it over the checkpoint; remote paths (s3://, ...) are Lightning's.
    `extra` goes into every file it writes: Lightning's weights-only saves skip the callbacks'
    `on_save_checkpoint`, and eval/predict need the run config even in those."""

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()
        self.extra: dict[str, Any] = {}

    def _sweep_once(self, folder: Path) -> None:
        if folder not in self._swept and folder.is_dir():
            remove_stale_temporaries(folder)
            self._swept.add(folder)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        checkpoint = {**checkpoint, **self.extra}
        if storage_options is not None or not _is_plain_path(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path).absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        self._sweep_once(target.parent)
        temporary = temporary_path(target)
        try:
            with open(temporary, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # a resume starts here: what its killed predecessor left is cleared before training goes on
        if _is_plain_path(path):
            self._sweep_once(Path(path).absolute().parent)
        return super().load_checkpoint(path, *args, **kwargs)
