"""A local folder (or one file) given as --data, put in the runctl bucket under the hash of its
content, so that the agent stages it exactly as it stages any S3 data.

Key layout (under `data/`, which instances may read):

    data/local/<digest>/<relative path>   each file, as it lies in the folder
    data/local/<digest>.json              the manifest, written last: the upload is complete

`<digest>` is the SHA-256 of the manifest, compact JSON `{"version": 1, "files": [[relative
path, size, sha256], ...]}` sorted by path. Same files and contents -> same prefix, so an
unchanged folder is not uploaded again (its manifest is there) and a changed file makes a new
prefix. The manifest sits beside the prefix, not in it, so it is not staged with the data. An
upload cut short is completed by the next one (the files already under the prefix are skipped).
The run's data entry is `s3://<bucket>/data/local/<digest>/`, staged into
`$RUNCTL_DATA_DIR/<name>/`; a single file lands as `$RUNCTL_DATA_DIR/<name>/<its name>`.

What is uploaded: every regular file in the folder and its subfolders, except hidden ones (a
name starting with '.', files or folders, e.g. `.git/`, `.DS_Store`). A symbolic link is followed
when it points inside the folder (a file's content goes up at the link's path; a folder is walked
unless it would loop) and refused when it points outside the folder or nowhere: what is uploaded
is what the folder holds, never more. Anything else (a socket, a pipe) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from runctl.errors import DataFolderError
from runctl.specs import LocalData

LOCAL_DATA_PREFIX = "data/local/"
MANIFEST_VERSION = 1
_CHUNK = 1024 * 1024


class DataFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str  # relative to the folder, POSIX
    size: int
    sha256: str
    source: Path  # where it is read from (a link's target, for a link)
    mtime_ns: int  # when it was hashed: a file that changes after that is not uploaded


class DataFolder(BaseModel):
    """A scanned --data folder: its files, in path order, hashed."""

    model_config = ConfigDict(frozen=True)

    name: str
    argument: str
    files: tuple[DataFile, ...]
    hidden: int  # hidden files and folders left out

    def manifest(self) -> bytes:
        return self._manifest

    @cached_property
    def _manifest(self) -> bytes:
        entries = [[item.path, item.size, item.sha256] for item in self.files]
        document = {"version": MANIFEST_VERSION, "files": entries}
        return json.dumps(document, separators=(",", ":")).encode()

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self._manifest).hexdigest()

    @property
    def prefix(self) -> str:
        return f"{LOCAL_DATA_PREFIX}{self.digest}/"

    @property
    def manifest_key(self) -> str:
        return f"{LOCAL_DATA_PREFIX}{self.digest}.json"

    @property
    def size(self) -> int:
        return sum(item.size for item in self.files)


class DataUpload(BaseModel):
    """Where a folder is in S3, and what this upload put there (0 files: it was there)."""

    model_config = ConfigDict(frozen=True)

    s3_uri: str
    files: int
    bytes: int


def scan_data_folder(item: LocalData) -> DataFolder:
    """Every file to upload, hashed; DataFolderError (one line, naming the flag) when the path is
    missing, holds no file, or has a link out of itself."""
    scan = _Scan(item)
    path = item.path
    if path.is_dir():
        root = path.resolve()
        scan.walk(root, root, "", frozenset({root}))
    elif path.is_file():
        scan.add(path.name, path.resolve())
    elif path.exists():
        raise scan.error(f"{path} is not a regular file or folder")
    else:
        raise scan.error(f"no such file or folder: {path}")
    if not scan.files:
        hidden = f" ({scan.hidden} hidden left out)" if scan.hidden else ""
        raise scan.error(f"{path} holds no files to upload{hidden}; put the data in it")
    files = tuple(sorted(scan.files, key=lambda found: found.path))
    return DataFolder(name=item.name, argument=item.argument, files=files, hidden=scan.hidden)


class _Scan:
    def __init__(self, item: LocalData) -> None:
        self.item = item
        self.files: list[DataFile] = []
        self.hidden = 0

    def error(self, problem: str) -> DataFolderError:
        return DataFolderError(f"--data {self.item.argument!r}: {problem}")

    def walk(self, root: Path, folder: Path, relative: str, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            raise self.error(f"cannot list {folder}: {error.strerror}") from error
        for entry in entries:
            if entry.name.startswith("."):
                self.hidden += 1
                continue
            path = Path(entry.path)
            inside = f"{relative}{entry.name}"
            real = self._link_target(root, path, inside) if entry.is_symlink() else path
            if real.is_dir():
                if real in ancestors:
                    raise self.error(f"{inside} links to a folder that holds it (a loop)")
                self.walk(root, real, f"{inside}/", ancestors | {real})
            elif real.is_file():
                self.add(inside, real)
            else:
                raise self.error(f"{inside} is not a regular file or folder; move it out")

    def _link_target(self, root: Path, link: Path, inside: str) -> Path:
        try:
            target = link.resolve()
        except (OSError, RuntimeError):  # a loop of links
            target = link
        if not target.exists():
            raise self.error(f"{inside} is a link to nothing ({os.readlink(link)}); remove it")
        if not target.is_relative_to(root):
            raise self.error(
                f"{inside} links outside the folder (to {target}); copy what it points to into "
                "the folder, or pass that folder as a --data of its own"
            )
        return target

    def add(self, relative: str, source: Path) -> None:
        digest = hashlib.sha256()
        try:
            before = source.stat()
            with source.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
        except OSError as error:
            raise self.error(f"cannot read {relative}: {error.strerror}") from error
        self.files.append(
            DataFile(
                path=relative,
                size=before.st_size,
                sha256=digest.hexdigest(),
                source=source,
                mtime_ns=before.st_mtime_ns,
            )
        )


def upload_data_folder(s3: Any, bucket: str, folder: DataFolder) -> DataUpload:
    """Put the folder under its digest unless its manifest is there; each file with boto3's
    transfer manager (multipart when large), then the manifest."""
    uri = f"s3://{bucket}/{folder.prefix}"
    if _exists(s3, bucket, folder.manifest_key):
        return DataUpload(s3_uri=uri, files=0, bytes=0)
    present = _sizes_under(s3, bucket, folder.prefix)  # an earlier upload cut short
    files = uploaded = 0
    for item in folder.files:
        key = f"{folder.prefix}{item.path}"
        if present.get(key) == item.size:
            continue
        _check_unchanged(folder, item)
        s3.upload_file(str(item.source), bucket, key)
        if not _unchanged(item):
            s3.delete_object(Bucket=bucket, Key=key)  # its content does not match the address
            _check_unchanged(folder, item)
        files += 1
        uploaded += item.size
    s3.put_object(
        Bucket=bucket,
        Key=folder.manifest_key,
        Body=folder.manifest(),
        ContentType="application/json",
    )
    return DataUpload(s3_uri=uri, files=files, bytes=uploaded)


def _unchanged(item: DataFile) -> bool:
    try:
        now = item.source.stat()
    except OSError:
        return False
    return (now.st_size, now.st_mtime_ns) == (item.size, item.mtime_ns)


def _check_unchanged(folder: DataFolder, item: DataFile) -> None:
    if not _unchanged(item):
        raise DataFolderError(
            f"--data {folder.argument!r}: {item.path} changed after it was read; run again "
            "once the folder stays still"
        )


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def _sizes_under(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}
