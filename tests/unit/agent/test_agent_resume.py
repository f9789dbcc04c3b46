"""Resume: latest.json's checkpoint is downloaded, checked, and only then handed to the script."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from instance_agent.resume import ResumeError, restore_latest_checkpoint

RUN = "run-1"
PREFIX = f"runs/{RUN}/checkpoints/"
MANIFEST = f"{PREFIX}latest.json"


class ObjectStore:
    """get_object and download_file over a dict, as the S3 client answers them."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "x"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        if key not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "x"}}, "HeadObject")
        Path(filename).write_bytes(self.objects[key])

    def put_checkpoint(self, relative: str, data: bytes, **manifest: Any) -> dict[str, Any]:
        self.objects[PREFIX + relative] = data
        body = {
            "key": PREFIX + relative,
            "path": relative,
            "step": 40,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "uploaded_at": "2026-11-23T10:00:00+00:00",
            "attempt": 1,
            **manifest,
        }
        self.objects[MANIFEST] = json.dumps(body).encode()
        return body


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore()


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoints"
    path.mkdir()
    return path


def test_given_no_latest_json_then_there_is_nothing_to_resume(store, directory):
    assert restore_latest_checkpoint(store, "b", RUN, directory) is None
    assert list(directory.iterdir()) == []


def test_given_a_checkpoint_then_it_lands_at_its_relative_path_verified(store, directory):
    manifest = store.put_checkpoint("epoch-3/ckpt-40.pt", b"weights-40")

    restored = restore_latest_checkpoint(store, "b", RUN, directory)

    assert restored is not None
    assert restored.local_path == (directory / "epoch-3" / "ckpt-40.pt").resolve()
    assert restored.local_path.is_absolute()
    assert restored.local_path.read_bytes() == b"weights-40"
    assert restored.manifest == manifest
    assert restored.relative == "epoch-3/ckpt-40.pt"
    assert sorted(p.name for p in (directory / "epoch-3").iterdir()) == ["ckpt-40.pt"]


def test_given_a_torn_checkpoint_then_resuming_fails_and_no_file_is_left(store, directory):
    store.put_checkpoint("ckpt-40.pt", b"weights-40")
    store.objects[PREFIX + "ckpt-40.pt"] = b"weights-4"  # cut short

    with pytest.raises(ResumeError, match="not resuming from a torn or altered file"):
        restore_latest_checkpoint(store, "b", RUN, directory)

    assert list(directory.rglob("*")) == []


def test_given_latest_json_naming_a_missing_object_then_resuming_fails(store, directory):
    store.put_checkpoint("ckpt-40.pt", b"weights-40")
    del store.objects[PREFIX + "ckpt-40.pt"]

    with pytest.raises(ResumeError, match="which does not exist"):
        restore_latest_checkpoint(store, "b", RUN, directory)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"path": "../../escape.pt", "key": PREFIX + "../../escape.pt"}, "cannot use"),
        ({"path": "/etc/passwd", "key": PREFIX + "/etc/passwd"}, "cannot use"),
        ({"path": ".hidden.pt", "key": PREFIX + ".hidden.pt"}, "cannot use"),
        ({"key": "runs/other-run/checkpoints/ckpt-40.pt"}, "does not match"),
        ({"sha256": "abc"}, "no valid sha256"),
        ({"path": None}, "lacks"),
    ],
)
def test_given_an_unusable_manifest_then_resuming_fails_with_the_reason(
    store, directory, fields, problem
):
    store.put_checkpoint("ckpt-40.pt", b"weights-40", **fields)

    with pytest.raises(ResumeError, match=problem):
        restore_latest_checkpoint(store, "b", RUN, directory)


def test_given_latest_json_that_is_not_json_then_resuming_fails(store, directory):
    store.objects[MANIFEST] = b"{torn"

    with pytest.raises(ResumeError, match="is not JSON"):
        restore_latest_checkpoint(store, "b", RUN, directory)
