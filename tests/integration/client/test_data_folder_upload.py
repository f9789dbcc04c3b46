"""A local --data folder goes into the bucket under its content's hash, against moto: the bytes
land under data/local/<digest>/, an unchanged folder uploads nothing, a changed file makes a new
prefix, and an upload cut short is completed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runctl.data_folders import DataFolder, scan_data_folder, upload_data_folder
from runctl.errors import DataFolderError
from runctl.specs import LocalData

BUCKET = "runctl-bucket"
WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject")


class CountingS3:
    """A moto S3 client that counts the write calls it sends."""

    def __init__(self) -> None:
        self.client = boto3.client("s3", region_name="us-east-1")
        self.client.create_bucket(Bucket=BUCKET)
        self.writes: list[str] = []
        for operation in WRITES:
            self.client.meta.events.register(f"before-call.s3.{operation}", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.writes.append(model.name)

    def objects(self, prefix: str) -> dict[str, bytes]:
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {
            item["Key"]: self.client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            for item in listed
        }

    def etags(self, prefix: str) -> dict[str, tuple[str, Any]]:
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {item["Key"]: (item["ETag"], item["LastModified"]) for item in listed}


@pytest.fixture
def s3() -> Iterator[CountingS3]:
    with mock_aws():
        yield CountingS3()


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return root


def _scan(root: Path) -> DataFolder:
    return scan_data_folder(LocalData(name="ds", path=root, argument="./ds"))


def test_given_a_folder_when_uploaded_then_its_bytes_are_under_the_digest_prefix(s3, tmp_path):
    # Given a folder with a nested file and one large enough for a multipart upload
    large = os.urandom(9 * 1024 * 1024)
    root = _folder(tmp_path / "ds", {"a.txt": b"alpha", "sub/b.bin": large})
    folder = _scan(root)

    # When it is uploaded
    upload = upload_data_folder(s3.client, BUCKET, folder)

    # Then each file's bytes are under data/local/<digest>/<path>, the manifest beside the
    # prefix, and the RunSpec gets the prefix
    assert upload.s3_uri == f"s3://{BUCKET}/data/local/{folder.digest}/"
    assert (upload.files, upload.bytes) == (2, 5 + len(large))
    assert s3.objects(folder.prefix) == {
        f"{folder.prefix}a.txt": b"alpha",
        f"{folder.prefix}sub/b.bin": large,
    }
    assert s3.objects(folder.manifest_key) == {folder.manifest_key: folder.manifest()}
    assert "CreateMultipartUpload" in s3.writes  # the transfer manager split the large one


def test_given_an_unchanged_folder_when_uploaded_again_then_nothing_is_written(s3, tmp_path):
    # Given a folder uploaded once, then a copy of it elsewhere with the same content
    files = {"a.txt": b"alpha", "sub/b.txt": b"beta"}
    first = upload_data_folder(s3.client, BUCKET, _scan(_folder(tmp_path / "ds", files)))
    before = s3.etags("data/")
    s3.writes.clear()

    # When the same folder, and the copy, are uploaded again
    again = upload_data_folder(s3.client, BUCKET, _scan(tmp_path / "ds"))
    copy = upload_data_folder(s3.client, BUCKET, _scan(_folder(tmp_path / "copy", files)))

    # Then no object was written and the bucket is as it was; both point at the same prefix
    assert s3.writes == []
    assert s3.etags("data/") == before
    assert (again.files, again.bytes) == (0, 0)
    assert again.s3_uri == copy.s3_uri == first.s3_uri


def test_given_a_changed_file_when_uploaded_then_the_folder_gets_a_new_prefix(s3, tmp_path):
    root = _folder(tmp_path / "ds", {"a.txt": b"alpha", "b.txt": b"beta"})
    first = upload_data_folder(s3.client, BUCKET, _scan(root))

    # When one file changes and the folder is uploaded again
    (root / "b.txt").write_bytes(b"BETA!")
    second_folder = _scan(root)
    second = upload_data_folder(s3.client, BUCKET, second_folder)

    # Then the new content is under a new prefix, and the old prefix is untouched
    assert second.s3_uri != first.s3_uri
    assert s3.objects(second_folder.prefix) == {
        f"{second_folder.prefix}a.txt": b"alpha",
        f"{second_folder.prefix}b.txt": b"BETA!",
    }
    old_prefix = first.s3_uri.removeprefix(f"s3://{BUCKET}/")
    assert s3.objects(old_prefix)[f"{old_prefix}b.txt"] == b"beta"


def test_given_an_upload_cut_short_when_uploaded_again_then_only_the_rest_goes_up(s3, tmp_path):
    # Given a folder of which one file reached S3 before the upload stopped (no manifest)
    root = _folder(tmp_path / "ds", {"a.txt": b"alpha", "b.txt": b"beta"})
    folder = _scan(root)
    s3.client.put_object(Bucket=BUCKET, Key=f"{folder.prefix}a.txt", Body=b"alpha")
    s3.writes.clear()

    # When it is uploaded
    upload = upload_data_folder(s3.client, BUCKET, folder)

    # Then only the missing file and the manifest are written
    assert (upload.files, upload.bytes) == (1, 4)
    assert s3.writes == ["PutObject", "PutObject"]
    assert set(s3.objects("data/")) == {
        f"{folder.prefix}a.txt",
        f"{folder.prefix}b.txt",
        folder.manifest_key,
    }


def test_given_a_file_changed_after_the_scan_then_the_upload_stops_without_a_manifest(s3, tmp_path):
    root = _folder(tmp_path / "ds", {"a.txt": b"alpha"})
    folder = _scan(root)
    (root / "a.txt").write_bytes(b"other content")

    with pytest.raises(DataFolderError, match=r"a\.txt changed after it was read"):
        upload_data_folder(s3.client, BUCKET, folder)

    assert s3.objects("data/") == {}
