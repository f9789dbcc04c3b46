"""The agent's S3 calls: transfer-manager uploads with SHA256 checksums, small JSON objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

CHECKSUM = "SHA256"
_MISSING = {"NoSuchKey", "404", "NotFound"}


def upload_file(s3: Any, path: Path, bucket: str, key: str, content_type: str = "") -> None:
    """Upload through s3transfer (multipart for big files), with S3 verifying a SHA256 checksum."""
    extra = {"ChecksumAlgorithm": CHECKSUM}
    if content_type:
        extra["ContentType"] = content_type
    s3.upload_file(str(path), bucket, key, ExtraArgs=extra)


def download_file(
    s3: Any, bucket: str, key: str, path: Path, progress: Callable[[int], None] | None = None
) -> None:
    """boto3's transfer manager (parallel ranged GETs, written under a temporary name and renamed
    when whole); `progress` is called with each chunk's size, and an exception it raises aborts
    the download."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(path), **({"Callback": progress} if progress else {}))


def put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(value).encode(),
        ContentType="application/json",
        ChecksumAlgorithm=CHECKSUM,
    )


def get_json(s3: Any, bucket: str, key: str) -> Any | None:
    """The decoded object, or None when there is no such key."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if is_missing(error):
            return None
        raise
    return json.loads(body)


def is_missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING
