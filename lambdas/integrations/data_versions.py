"""Finds pipelines' data versions in S3 by their marker objects (client injected).

Only ListObjectsV2 is used, never HeadObject: the function may list the watched prefixes and
read nothing, and a listing tells a missing marker from a forbidden one (HeadObject answers 403
for both without a bucket-wide ListBucket).
"""

from __future__ import annotations

from typing import Any

from lambdas.models.pipeline import DataVersion, Pipeline


class DataVersions:
    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def at_marker(self, pipeline: Pipeline, bucket: str, key: str) -> DataVersion | None:
        """The version whose marker is `key`, as S3 has it now; None when `key` is not one of
        the pipeline's markers, or no longer exists."""
        version_prefix = pipeline.watch.version_prefix(key)
        if version_prefix is None:
            return None
        marker = self._marker_object(bucket, key)
        if marker is None:
            return None
        return DataVersion(
            pipeline=pipeline.name,
            bucket=bucket,
            marker_key=key,
            etag=marker["ETag"].strip('"'),
            last_modified=marker["LastModified"],
            version_prefix=version_prefix,
        )

    def newest(self, pipeline: Pipeline, bucket: str) -> DataVersion | None:
        """The version whose marker was written last (by LastModified; the key breaks ties)."""
        versions = [
            version
            for folder in self._folders(bucket, pipeline.watch.prefix)
            if (version := self.at_marker(pipeline, bucket, folder + pipeline.watch.marker))
        ]
        return max(
            versions, key=lambda version: (version.last_modified, version.marker_key), default=None
        )

    def _folders(self, bucket: str, prefix: str) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        return [entry["Prefix"] for page in pages for entry in page.get("CommonPrefixes", [])]

    def _marker_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        # The exact key sorts first among the keys it prefixes, so one result is enough.
        listed = self._s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        contents = listed.get("Contents", [])
        return contents[0] if contents and contents[0]["Key"] == key else None
