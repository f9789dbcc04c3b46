"""Staging before the script starts: the code archive (checked and extracted) and the input data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .archive import extract_archive
from .config import DataItem
from .errors import StagingError
from .files import sha256_of
from .layout import s3_uri, split_s3_uri
from .s3io import download_file, is_missing

logger = logging.getLogger(__name__)

Interrupted = Callable[[], bool]


class StagingInterrupted(Exception):
    """The attempt was interrupted while its data was staging: what is left is not fetched (a
    large dataset could outlast the two-minute warning), and the attempt hands off at once."""


def _never() -> bool:
    return False


def stage_code(
    s3: Any, uri: str, expected_sha256: str | None, code_dir: Path, scratch_dir: Path
) -> None:
    """Download the code archive, verify its checksum when one is given, extract it safely."""
    bucket, key = _split(uri)
    archive = scratch_dir / "code.tar.gz"
    _download(s3, bucket, key, archive)
    try:
        if expected_sha256:
            actual = sha256_of(archive)
            if actual != expected_sha256.lower():
                raise StagingError(
                    f"code archive {uri} has sha256 {actual}, expected {expected_sha256}"
                )
        count = extract_archive(archive, code_dir)
    finally:
        archive.unlink()
    logger.info("staged code from %s (%d entries)", uri, count)


def stage_data(
    s3: Any, items: list[DataItem], data_dir: Path, interrupted: Interrupted = _never
) -> None:
    """Stage each data item into data_dir/<name>/, keeping the key layout under a prefix.
    StagingInterrupted as soon as `interrupted()` says so, even in the middle of a file."""
    for item in items:
        count = stage_data_item(s3, item.s3_uri, data_dir / item.name, interrupted)
        logger.info("staged %d object(s) from %s into %s", count, item.s3_uri, item.name)


def stage_data_item(s3: Any, uri: str, target: Path, interrupted: Interrupted = _never) -> int:
    """An object lands as target/<its name>; a prefix (ending in '/') as target/<rest of key>."""
    bucket, key = _split(uri)
    target.mkdir(parents=True, exist_ok=True)
    if key and not key.endswith("/"):
        _download(s3, bucket, key, target / PurePosixPath(key).name, interrupted)
        return 1
    count = 0
    for object_key in _list_keys(s3, bucket, key):
        if object_key.endswith("/"):
            continue  # a console-made "folder" marker, not data
        relative = _relative_key(object_key[len(key) :], uri)
        _download(s3, bucket, object_key, target / relative, interrupted)
        count += 1
    if count == 0:
        raise StagingError(f"no objects under {uri}")
    return count


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [entry["Key"] for page in pages for entry in page.get("Contents", [])]
    except (ClientError, BotoCoreError) as error:
        raise StagingError(f"cannot list {s3_uri(bucket, prefix)}: {error}") from error


def _relative_key(rest: str, uri: str) -> PurePosixPath:
    path = PurePosixPath(rest)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise StagingError(f"an object under {uri} has a key the agent cannot stage: {rest!r}")
    return path


def _download(
    s3: Any, bucket: str, key: str, path: Path, interrupted: Interrupted = _never
) -> None:
    def check(_chunk: int = 0) -> None:
        if interrupted():
            raise StagingInterrupted(f"interrupted while staging {s3_uri(bucket, key)}")

    check()
    try:
        download_file(s3, bucket, key, path, progress=check)
    except ClientError as error:
        where = s3_uri(bucket, key)
        if is_missing(error):
            raise StagingError(f"no object at {where}") from error
        raise StagingError(f"cannot download {where}: {error}") from error
    except BotoCoreError as error:
        raise StagingError(f"cannot download {s3_uri(bucket, key)}: {error}") from error


def _split(uri: str) -> tuple[str, str]:
    try:
        return split_s3_uri(uri)
    except ValueError as error:
        raise StagingError(str(error)) from error
