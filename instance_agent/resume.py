"""Resume: before the script starts, the run's newest checkpoint (named by latest.json, written by
any earlier attempt) is downloaded into this attempt's checkpoint directory and checked.

The script finds its absolute path in $RUNCTL_RESUME_FROM (script.build_env). A checkpoint whose
SHA-256 is not the one latest.json records is never handed over: the attempt fails
(Runctl.AgentFailed) rather than resume from a torn or altered file.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .checkpoints import is_candidate
from .errors import AgentError
from .files import sha256_of
from .layout import checkpoint_manifest_key, checkpoints_prefix, s3_uri
from .s3io import download_file, get_json, is_missing

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ResumeError(AgentError):
    """latest.json or the checkpoint it names cannot be used."""


@dataclass(frozen=True)
class Restored:
    manifest: dict[str, Any]  # latest.json as read
    relative: str  # path under the checkpoint directory (and under checkpoints/ in S3)
    local_path: Path  # absolute: what $RUNCTL_RESUME_FROM holds
    sha256: str


def restore_latest_checkpoint(
    s3: Any, bucket: str, run_id: str, directory: Path
) -> Restored | None:
    """Download and verify the checkpoint latest.json names; None when the run has none yet."""
    manifest_uri = s3_uri(bucket, checkpoint_manifest_key(run_id))
    try:
        manifest = get_json(s3, bucket, checkpoint_manifest_key(run_id))
    except (ClientError, BotoCoreError) as error:
        raise ResumeError(f"cannot read {manifest_uri}: {error}") from error
    except ValueError as error:
        raise ResumeError(f"{manifest_uri} is not JSON: {error}") from error
    if manifest is None:
        return None
    relative, key, expected = _checked_manifest(manifest, manifest_uri, run_id)
    where = s3_uri(bucket, key)
    target = directory / relative
    # Downloaded under a name the checkpoint sync skips, and renamed only once verified.
    partial = target.with_name(f".{target.name}.resume.partial")
    try:
        download_file(s3, bucket, key, partial)
    except ClientError as error:
        if is_missing(error):
            raise ResumeError(f"{manifest_uri} names {where}, which does not exist") from error
        raise ResumeError(f"cannot download checkpoint {where}: {error}") from error
    except BotoCoreError as error:
        raise ResumeError(f"cannot download checkpoint {where}: {error}") from error
    actual = sha256_of(partial)
    if actual != expected:
        partial.unlink()
        raise ResumeError(
            f"checkpoint {where} has sha256 {actual}, but {manifest_uri} says {expected}: "
            "not resuming from a torn or altered file"
        )
    os.replace(partial, target)
    return Restored(manifest, relative, target.resolve(), actual)


def _checked_manifest(manifest: Any, manifest_uri: str, run_id: str) -> tuple[str, str, str]:
    """(relative path, key, sha256) of a usable manifest; ResumeError otherwise."""
    if not isinstance(manifest, dict):
        raise ResumeError(f"{manifest_uri} is not a JSON object")
    relative, key, expected = manifest.get("path"), manifest.get("key"), manifest.get("sha256")
    if not isinstance(relative, str) or not isinstance(key, str):
        raise ResumeError(f"{manifest_uri} lacks the checkpoint's path or key")
    parts = PurePosixPath(relative).parts
    if (
        not parts
        or PurePosixPath(relative).is_absolute()
        or ".." in parts
        or not is_candidate(relative)
    ):
        raise ResumeError(f"{manifest_uri} names a path the agent cannot use: {relative!r}")
    if key != checkpoints_prefix(run_id) + relative:
        raise ResumeError(f"{manifest_uri}: key {key!r} does not match path {relative!r}")
    if not isinstance(expected, str) or not _SHA256.match(expected):
        raise ResumeError(f"{manifest_uri} has no valid sha256 for {relative!r}")
    return relative, key, expected
