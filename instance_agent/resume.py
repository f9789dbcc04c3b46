"""Resume: before the script starts, the run's newest checkpoint (latest.json's first version,
written by any earlier attempt) is downloaded whole into the checkpoint directory and checked.

The script finds its absolute path in $RUNCTL_RESUME_FROM (script.build_env): the file, or the
folder for a folder checkpoint (Hugging Face's `checkpoint-50/`). A version whose files do not
match the SHA-256 latest.json records (or are missing) is never handed over: the next older
version is tried instead, and the attempt fails (Runctl.AgentFailed) only when none is usable.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .checkpoint_manifest import LEGACY_VERSION, CheckpointVersion, ManifestError
from .checkpoints import read_manifest
from .errors import AgentError
from .files import sha256_of
from .layout import checkpoint_manifest_key, s3_uri
from .s3io import download_file, is_missing

logger = logging.getLogger(__name__)


class ResumeError(AgentError):
    """latest.json cannot be read, or none of the checkpoints it lists can be had intact."""


@dataclass(frozen=True)
class Resumption:
    """What the manifest lists, and what was restored from it."""

    listed: list[CheckpointVersion] = field(default_factory=list)  # usable, newest first
    restored: CheckpointVersion | None = None
    local_path: Path | None = None  # absolute: what $RUNCTL_RESUME_FROM holds
    skipped: list[str] = field(default_factory=list)  # newer versions that failed, and why


class _Unusable(Exception):
    """This version cannot be restored; an older one may be."""


def restore_latest_checkpoint(s3: Any, bucket: str, run_id: str, directory: Path) -> Resumption:
    """Download and verify the newest usable checkpoint latest.json lists."""
    manifest_uri = s3_uri(bucket, checkpoint_manifest_key(run_id))
    try:
        versions = read_manifest(s3, bucket, run_id)
    except (ClientError, BotoCoreError) as error:
        raise ResumeError(f"cannot read {manifest_uri}: {error}") from error
    except ManifestError as error:
        raise ResumeError(f"{manifest_uri} {error}") from error
    except ValueError as error:
        raise ResumeError(f"{manifest_uri} is not JSON: {error}") from error
    skipped: list[str] = []
    for index, version in enumerate(versions):
        try:
            local_path = _restore(s3, bucket, run_id, directory, version)
        except _Unusable as error:
            logger.warning("not resuming from checkpoint %s: %s", version.name, error)
            skipped.append(f"{version.name} (version {version.version}): {error}")
            continue
        usable = versions[index:]
        return Resumption(usable, version, local_path, skipped)
    if versions:
        raise ResumeError(
            f"no checkpoint {manifest_uri} lists can be restored intact: " + "; ".join(skipped)
        )
    return Resumption()


def _restore(
    s3: Any, bucket: str, run_id: str, directory: Path, version: CheckpointVersion
) -> Path:
    # Downloaded under a hidden name the checkpoint sync skips, moved into place once verified.
    staging = directory / f".runctl-restore-{version.version}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for item in version.files:
            key = version.key(run_id, item.path)
            where = s3_uri(bucket, key)
            local = staging / item.path
            try:
                download_file(s3, bucket, key, local)
            except ClientError as error:
                if is_missing(error):
                    raise _Unusable(f"{where} does not exist") from error
                raise ResumeError(f"cannot download checkpoint {where}: {error}") from error
            except BotoCoreError as error:
                raise ResumeError(f"cannot download checkpoint {where}: {error}") from error
            actual = sha256_of(local)
            if actual != item.sha256:
                raise _Unusable(
                    f"{where} has sha256 {actual}, but latest.json says {item.sha256}: "
                    "a torn or altered file"
                )
        target = directory / version.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / version.name, target)
        if version.version == LEGACY_VERSION:  # format 1 named a file, maybe in a folder
            return (directory / version.files[0].path).resolve()
        return target.resolve()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
