"""Checkpoint sync: complete files in $RUNCTL_CHECKPOINT_DIR go to S3, then latest.json names the
newest. A file counts as complete when its name is not a temporary one and its size and mtime held
still between two scans (or the script has exited)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .clock import utc_now_iso
from .files import sha256_of, walk_files
from .layout import checkpoint_manifest_key, checkpoints_prefix
from .s3io import get_json, put_json, upload_file

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".tmp", ".partial", ".part")
MANIFEST_NAME = "latest.json"


def is_candidate(relative: str) -> bool:
    """False for temporary or hidden names, and for the manifest's own name."""
    parts = PurePosixPath(relative).parts
    if any(part.startswith(".") for part in parts):
        return False
    if parts[-1].endswith(TEMPORARY_SUFFIXES):
        return False
    # runs/<id>/checkpoints/latest.json is the manifest: a checkpoint of that name would clobber it.
    return relative != MANIFEST_NAME


def step_from_name(relative: str) -> int | None:
    """The last number in the file name without its extension: ckpt-000120.pt -> 120."""
    numbers = re.findall(r"\d+", PurePosixPath(relative).stem)
    return int(numbers[-1]) if numbers else None


@dataclass(frozen=True)
class Uploaded:
    relative: str
    key: str
    size: int
    mtime_ns: int
    sha256: str
    uploaded_at: str


Signature = tuple[int, int]  # (size, mtime_ns)


class CheckpointSync:
    """Call sync() every few seconds, and sync(final=True) once the script has exited."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        run_id: str,
        attempt: int,
        directory: Path,
        clock: Callable[[], str] = utc_now_iso,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.run_id = run_id
        self.attempt = attempt
        self.directory = directory
        self.clock = clock
        self.uploaded: dict[str, Uploaded] = {}
        self.manifest: dict[str, Any] | None = None
        self._previous: dict[str, Signature] = {}

    def sync(self, final: bool = False) -> list[str]:
        """Upload the complete files that are new or changed; return their relative paths."""
        current = self._scan()
        ready = [
            relative
            for relative, signature in current.items()
            if (final or self._previous.get(relative) == signature)
            and self._changed_since_upload(relative, signature)
        ]
        self._previous = current
        done = []
        # Oldest first, so the manifest moves forward as the uploads complete.
        for relative in sorted(ready, key=lambda name: (current[name][1], name)):
            if self._upload(relative, current[relative]):
                done.append(relative)
        return done

    def _scan(self) -> dict[str, Signature]:
        found = {}
        for relative in walk_files(self.directory):
            if not is_candidate(relative):
                continue
            try:
                info = os.stat(self.directory / relative)
            except FileNotFoundError:
                continue  # renamed or removed since the walk
            found[relative] = (info.st_size, info.st_mtime_ns)
        return found

    def _changed_since_upload(self, relative: str, signature: Signature) -> bool:
        done = self.uploaded.get(relative)
        return done is None or (done.size, done.mtime_ns) != signature

    def _upload(self, relative: str, signature: Signature) -> bool:
        path = self.directory / relative
        key = checkpoints_prefix(self.run_id) + relative
        digest = sha256_of(path)
        upload_file(self.s3, path, self.bucket, key)
        info = os.stat(path)
        if (info.st_size, info.st_mtime_ns) != signature:
            logger.info("checkpoint %s changed while uploading; it will be sent again", relative)
            return False
        self.uploaded[relative] = Uploaded(
            relative, key, signature[0], signature[1], digest, self.clock()
        )
        logger.info("uploaded checkpoint %s (%d bytes)", relative, signature[0])
        self._write_manifest()
        return True

    def _write_manifest(self) -> None:
        # Only ever after the object's upload returned: latest.json never names a missing file.
        newest = max(self.uploaded.values(), key=lambda item: (item.mtime_ns, item.relative))
        manifest = {
            "key": newest.key,
            "path": newest.relative,
            "step": step_from_name(newest.relative),
            "sha256": newest.sha256,
            "size": newest.size,
            "uploaded_at": newest.uploaded_at,
            "attempt": self.attempt,
        }
        if manifest == self.manifest:
            return
        put_json(self.s3, self.bucket, checkpoint_manifest_key(self.run_id), manifest)
        self.manifest = manifest


def newest_checkpoint_manifest(s3: Any, bucket: str, run_id: str) -> dict[str, Any] | None:
    """The run's latest.json (written by any attempt), or None when no checkpoint was uploaded."""
    manifest = get_json(s3, bucket, checkpoint_manifest_key(run_id))
    return manifest if isinstance(manifest, dict) else None
