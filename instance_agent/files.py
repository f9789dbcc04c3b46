"""Local file helpers: hashing, walking a tree, and append-only files copied to S3 as they grow."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import BinaryIO, Callable

_CHUNK = 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def walk_files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under root, sorted; symlinks are not followed."""
    found = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


class AppendOnlyFile:
    """A local file written line by line while copies of it are uploaded now and then."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = open(path, "ab")  # noqa: SIM115 - lives as long as the attempt
        self._write_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._published_size: int | None = None

    def write(self, data: bytes) -> None:
        with self._write_lock:
            self._handle.write(data)
            self._handle.flush()

    def size(self) -> int:
        with self._write_lock:
            return self._handle.tell()

    def publish(self, upload: Callable[[Path], None]) -> bool:
        """Upload a snapshot through `upload` when the file grew; True when one was uploaded."""
        with self._publish_lock:
            size = self.size()
            if size == self._published_size:
                return False
            # The file only grows: its first `size` bytes are final, so copy them without
            # holding the write lock (the reader threads must keep draining the pipes).
            snapshot = self.path.with_name(self.path.name + ".upload")
            with open(self.path, "rb") as source, open(snapshot, "wb") as target:
                _copy_bytes(source, target, size)
            try:
                upload(snapshot)
            finally:
                snapshot.unlink()
            self._published_size = size
            return True

    def close(self) -> None:
        with self._write_lock:
            self._handle.close()


def _copy_bytes(source: BinaryIO, target: BinaryIO, count: int) -> None:
    remaining = count
    while remaining > 0:
        chunk = source.read(min(_CHUNK, remaining))
        if not chunk:
            break
        target.write(chunk)
        remaining -= len(chunk)
    target.flush()
