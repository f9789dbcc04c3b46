"""latest.json: the run's newest durable checkpoints, newest first, at most `keep` of them.

A checkpoint is a top-level file or folder under $RUNCTL_CHECKPOINT_DIR. Each upload of one is a
*version* with S3 keys of its own (runs/<id>/checkpoints/v/<version>/<path>), so a durable
checkpoint is never overwritten: the manifest moves to a new version only once every file of it
is in S3, and an older version it no longer lists is deleted only after that move.

    {"format": 2, "checkpoints": [
        {"version": "3-000017", "name": "checkpoint-50", "kind": "folder", "step": 50,
         "attempt": 3, "saved_at": ISO, "uploaded_at": ISO,
         "files": [{"path": "checkpoint-50/model.safetensors", "sha256": ..., "size": ...}]},
        ...]}

Format 1 (one file: {"key", "path", "sha256", ...}), written by agents before versions, is read as
a one-entry manifest so a run in flight across an upgrade still resumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .bounds import fit_head
from .layout import checkpoint_version_prefix, checkpoints_prefix

FORMAT = 2
FILE = "file"
FOLDER = "folder"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SUMMARY_NAME_BYTES = 200
# A format-1 checkpoint: its one object is at checkpoints/<path>, not under a version prefix.
LEGACY_VERSION = "0-0"
_VERSION = re.compile(r"^[0-9]+-[0-9]+$")


class ManifestError(ValueError):
    """latest.json cannot be used as it is."""


@dataclass(frozen=True)
class CheckpointFile:
    path: str  # relative to the checkpoint directory: "<name>" or "<name>/<inside>"
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class CheckpointVersion:
    """One durable upload of one checkpoint (a top-level file or folder)."""

    version: str  # "<attempt>-<sequence>": unique in the run
    name: str  # the top-level file or folder name
    kind: str  # FILE | FOLDER
    files: tuple[CheckpointFile, ...]
    attempt: int
    saved_at: str  # when the script last wrote it (its newest file's mtime), ISO
    uploaded_at: str
    step: int | None = None

    def key(self, run_id: str, relative: str) -> str:
        if self.version == LEGACY_VERSION:  # also once carried into a format-2 manifest
            return checkpoints_prefix(run_id) + relative
        return checkpoint_version_prefix(run_id, self.version) + relative

    def size(self) -> int:
        return sum(item.size for item in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "kind": self.kind,
            "step": self.step,
            "attempt": self.attempt,
            "saved_at": self.saved_at,
            "uploaded_at": self.uploaded_at,
            "files": [item.to_dict() for item in self.files],
        }

    def summary(self) -> dict[str, Any]:
        """What the run item records about it (small: no file list, the name cut short)."""
        return {
            "name": fit_head(self.name, SUMMARY_NAME_BYTES),
            "kind": self.kind,
            "step": self.step,
            "attempt": self.attempt,
            "version": self.version,
            "saved_at": self.saved_at,
        }


def manifest_body(versions: list[CheckpointVersion]) -> dict[str, Any]:
    return {"format": FORMAT, "checkpoints": [item.to_dict() for item in versions]}


def parse_manifest(raw: Any, run_id: str) -> list[CheckpointVersion]:
    """The versions latest.json lists, newest first; ManifestError says what is wrong."""
    if not isinstance(raw, dict):
        raise ManifestError("is not a JSON object")
    if raw.get("format") == FORMAT:
        entries = raw.get("checkpoints")
        if not isinstance(entries, list):
            raise ManifestError("has no checkpoints list")
        return [_parse_version(entry) for entry in entries]
    if "key" in raw and "path" in raw:
        return [_parse_format_1(raw, run_id)]
    raise ManifestError(f"has an unknown format: {raw.get('format')!r}")


def _parse_version(entry: Any) -> CheckpointVersion:
    if not isinstance(entry, dict):
        raise ManifestError("lists a checkpoint that is not an object")
    version, name, kind = entry.get("version"), entry.get("name"), entry.get("kind")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ManifestError(f"has a bad version: {version!r}")
    if not isinstance(name, str) or not is_safe_relative(name) or "/" in name:
        raise ManifestError(f"names a checkpoint the agent cannot use: {name!r}")
    if kind not in (FILE, FOLDER):
        raise ManifestError(f"checkpoint {name!r} has an unknown kind: {kind!r}")
    raw_files = entry.get("files")
    if not isinstance(raw_files, list) or not raw_files:
        raise ManifestError(f"checkpoint {name!r} lists no files")
    files = tuple(_parse_file(item, name, kind) for item in raw_files)
    attempt = entry.get("attempt")
    step = entry.get("step")
    return CheckpointVersion(
        version=version,
        name=name,
        kind=kind,
        files=files,
        attempt=attempt if isinstance(attempt, int) else 0,
        saved_at=str(entry.get("saved_at") or ""),
        uploaded_at=str(entry.get("uploaded_at") or ""),
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
    )


def _parse_file(item: Any, name: str, kind: str) -> CheckpointFile:
    if not isinstance(item, dict):
        raise ManifestError(f"checkpoint {name!r} lists a file that is not an object")
    path, sha256, size = item.get("path"), item.get("sha256"), item.get("size")
    inside = path == name if kind == FILE else str(path).startswith(name + "/")
    if not isinstance(path, str) or not is_safe_relative(path) or not inside:
        raise ManifestError(f"checkpoint {name!r} lists a path it cannot hold: {path!r}")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ManifestError(f"{path!r} has no valid sha256")
    if not isinstance(size, int) or size < 0:
        raise ManifestError(f"{path!r} has no valid size")
    return CheckpointFile(path, sha256, size)


def _parse_format_1(raw: dict[str, Any], run_id: str) -> CheckpointVersion:
    path, key, sha256 = raw.get("path"), raw.get("key"), raw.get("sha256")
    if not isinstance(path, str) or not is_safe_relative(path):
        raise ManifestError(f"names a path the agent cannot use: {path!r}")
    if key != checkpoints_prefix(run_id) + path:
        raise ManifestError(f"key {key!r} does not match path {path!r}")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ManifestError(f"has no valid sha256 for {path!r}")
    size = raw.get("size")
    step = raw.get("step")
    attempt = raw.get("attempt")
    name = PurePosixPath(path).parts[0]
    return CheckpointVersion(
        version=LEGACY_VERSION,
        name=name,
        kind=FILE if name == path else FOLDER,
        files=(CheckpointFile(path, sha256, size if isinstance(size, int) else 0),),
        attempt=attempt if isinstance(attempt, int) else 0,
        saved_at=str(raw.get("uploaded_at") or ""),
        uploaded_at=str(raw.get("uploaded_at") or ""),
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
    )


def is_safe_relative(relative: str) -> bool:
    """A relative POSIX path with no '..' and no empty part: it cannot leave the directory."""
    path = PurePosixPath(relative)
    parts = relative.split("/")
    return bool(relative) and not path.is_absolute() and ".." not in parts and "" not in parts
