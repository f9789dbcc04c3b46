"""Checkpoint sync: complete files in $RUNCTL_CHECKPOINT_DIR go to S3, then latest.json names the
newest. A file counts as complete when its name is not a temporary one and its size and mtime held
still between two scans, or the script has exited by itself. When the script was killed
(SIGKILL), a file written in place may have been cut short: then only files that had already held
still before the kill (between two scans, or for QUIET_SECONDS when the agent itself kills it), and
did not change since, count."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .clock import utc_now_iso
from .files import sha256_of, walk_files
from .layout import checkpoint_manifest_key, checkpoints_prefix
from .s3io import get_json, put_json, upload_file

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".tmp", ".partial", ".part")
# Before the agent kills the script, a file not written to for this long counts as complete.
QUIET_SECONDS = 1.0
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
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.run_id = run_id
        self.attempt = attempt
        self.directory = directory
        self.clock = clock
        self.wall_clock_ns = wall_clock_ns  # the clock file mtimes are stamped with
        self.uploaded: dict[str, Uploaded] = {}
        self.manifest: dict[str, Any] | None = None
        self._previous: dict[str, Signature] = {}
        self._settled: dict[str, Signature] = {}  # held still between the last two scans
        self._settled_at_kill: dict[str, Signature] | None = None
        self._lock = threading.Lock()

    def sync(self, final: bool = False, killed: bool = False) -> list[str]:
        """Upload the complete files that are new or changed; return their relative paths.

        final: the script has exited. If it exited by itself (killed=False), whatever it left under
        a complete name is complete. If it was killed, only files that had settled before count
        (and after before_kill(), whatever the arguments, only those that had settled by then).
        Uploads go newest first, so that when time runs out (an interruption gives two minutes)
        the checkpoint that matters is in S3, and latest.json names it, before any older one.
        """
        with self._lock:
            current = self._scan()
            settled_now = {
                relative: signature
                for relative, signature in current.items()
                if self._previous.get(relative) == signature
            }
            if self._settled_at_kill is not None:
                trusted = self._settled_at_kill
                ready = [name for name, sig in current.items() if trusted.get(name) == sig]
            elif final and killed:
                ready = [name for name, sig in current.items() if self._settled.get(name) == sig]
            elif final:
                ready = list(current)
            else:
                ready = list(settled_now)
            ready = [name for name in ready if self._changed_since_upload(name, current[name])]
            self._settled = settled_now
            self._previous = current
            done = []
            for relative in sorted(ready, key=lambda name: (current[name][1], name), reverse=True):
                if self._upload(relative, current[relative]):
                    done.append(relative)
            return done

    def before_kill(self) -> None:
        """The script is about to get SIGKILL: a file it is writing then is cut short, and once it
        is dead such a file holds still like a complete one. So from now on only files that had
        settled by this moment (held still between two scans, or not written to for
        QUIET_SECONDS), unchanged since, are uploaded."""
        with self._lock:  # after a sync in progress, so its scans count
            quiet_before = self.wall_clock_ns() - int(QUIET_SECONDS * 1e9)
            quiet = {
                relative: signature
                for relative, signature in self._scan().items()
                if signature[1] <= quiet_before
            }
            self._settled_at_kill = {**self._settled, **quiet}

    def mark_present(self, relative: str, sha256: str, uploaded_at: str) -> None:
        """A local file that is already in S3 under its key (the checkpoint resumed from): it is
        not uploaded again unless the script changes it."""
        info = os.stat(self.directory / relative)
        with self._lock:
            self.uploaded[relative] = Uploaded(
                relative,
                checkpoints_prefix(self.run_id) + relative,
                info.st_size,
                info.st_mtime_ns,
                sha256,
                uploaded_at,
            )

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
