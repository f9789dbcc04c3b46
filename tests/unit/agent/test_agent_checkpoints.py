"""Checkpoint sync: only complete files, only once they hold still, manifest after the upload."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from instance_agent.checkpoints import CheckpointSync, is_candidate, step_from_name


class RecordingS3:
    """Records uploads and puts in order; stands in for the S3 client."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.objects: dict[str, bytes] = {}
        self.extra_args: dict[str, dict[str, Any]] = {}
        self.manifest_targets_present: list[bool] = []

    def upload_file(self, filename: str, bucket: str, key: str, ExtraArgs: dict[str, Any]) -> None:
        self.events.append(("upload", key))
        self.objects[key] = Path(filename).read_bytes()
        self.extra_args[key] = ExtraArgs

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> None:
        if Key.endswith("/latest.json"):
            # What a reader of the manifest at this moment would find: the object it names.
            named = json.loads(Body)["key"]
            self.manifest_targets_present.append(named in self.objects)
        self.events.append(("put", Key))
        self.objects[Key] = Body


@pytest.fixture
def s3() -> RecordingS3:
    return RecordingS3()


@pytest.fixture
def ckpt_dir(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoints"
    path.mkdir()
    return path


@pytest.fixture
def sync(s3: RecordingS3, ckpt_dir: Path) -> CheckpointSync:
    return CheckpointSync(s3, "bucket", "run-1", 2, ckpt_dir, clock=lambda: "2026-01-01T00:00:00Z")


def _write(path: Path, data: bytes, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("ckpt-10.pt", True),
        ("epoch_3/model.bin", True),
        ("ckpt-10.pt.tmp", False),
        ("ckpt.partial", False),
        ("ckpt.part", False),
        (".ckpt-10.pt", False),
        (".hidden/ckpt.pt", False),
        ("latest.json", False),
        ("sub/latest.json", True),
    ],
)
def test_temporary_and_hidden_names_are_not_checkpoints(relative, expected):
    assert is_candidate(relative) is expected


@pytest.mark.parametrize(
    ("relative", "step"),
    [
        ("ckpt-000120.pt", 120),
        ("model_v2_step300.bin", 300),
        ("epoch3.h5", 3),
        ("run7/ckpt-5.tar.gz", 5),
        ("model.pt", None),
    ],
)
def test_the_step_is_the_last_number_of_the_file_name(relative, step):
    assert step_from_name(relative) == step


def test_a_new_file_is_uploaded_only_once_it_held_still_for_two_scans(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-1.pt", b"aaa", 1_000_000_000)

    assert sync.sync() == []
    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects["runs/run-1/checkpoints/ckpt-1.pt"] == b"aaa"


def test_a_changing_file_is_skipped_until_it_is_stable(sync, s3, ckpt_dir):
    path = ckpt_dir / "ckpt-1.pt"
    _write(path, b"a", 1_000_000_000)
    sync.sync()
    _write(path, b"ab", 2_000_000_000)  # still being written

    assert sync.sync() == []
    assert s3.events == []
    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects["runs/run-1/checkpoints/ckpt-1.pt"] == b"ab"


def test_temporary_files_are_never_uploaded_even_when_stable(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-1.pt.tmp", b"half", 1_000_000_000)
    _write(ckpt_dir / ".ckpt-2.pt", b"half", 1_000_000_000)

    sync.sync()
    sync.sync()
    sync.sync(final=True)

    assert s3.events == []


def test_the_final_sync_uploads_files_seen_once(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-9.pt", b"last", 1_000_000_000)

    assert sync.sync(final=True) == ["ckpt-9.pt"]


def test_an_unchanged_file_is_not_uploaded_again_but_a_rewritten_one_is(sync, s3, ckpt_dir):
    path = ckpt_dir / "best.pt"
    _write(path, b"v1", 1_000_000_000)
    sync.sync(final=True)
    sync.sync()
    sync.sync()
    assert [event for event in s3.events if event[0] == "upload"] == [
        ("upload", "runs/run-1/checkpoints/best.pt")
    ]

    _write(path, b"v2", 2_000_000_000)
    sync.sync()
    sync.sync()

    assert s3.objects["runs/run-1/checkpoints/best.pt"] == b"v2"


def test_the_manifest_is_written_after_the_upload_and_names_the_newest(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-000020.pt", b"newer", 2_000_000_000)
    _write(ckpt_dir / "ckpt-000010.pt", b"older", 1_000_000_000)

    sync.sync(final=True)

    manifest_key = "runs/run-1/checkpoints/latest.json"
    uploads = [key for kind, key in s3.events if kind == "upload"]
    assert uploads == [
        "runs/run-1/checkpoints/ckpt-000010.pt",
        "runs/run-1/checkpoints/ckpt-000020.pt",
    ]
    assert s3.manifest_targets_present == [True, True]
    assert json.loads(s3.objects[manifest_key]) == {
        "key": "runs/run-1/checkpoints/ckpt-000020.pt",
        "path": "ckpt-000020.pt",
        "step": 20,
        "sha256": hashlib.sha256(b"newer").hexdigest(),
        "size": 5,
        "uploaded_at": "2026-01-01T00:00:00Z",
        "attempt": 2,
    }


def test_uploads_ask_s3_for_a_sha256_checksum(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-1.pt", b"x", 1_000_000_000)

    sync.sync(final=True)

    assert s3.extra_args["runs/run-1/checkpoints/ckpt-1.pt"] == {"ChecksumAlgorithm": "SHA256"}


def test_an_older_file_uploaded_later_does_not_move_the_manifest_back(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-2.pt", b"new", 2_000_000_000)
    sync.sync(final=True)
    _write(ckpt_dir / "notes/ckpt-1.pt", b"old", 1_000_000_000)

    sync.sync(final=True)

    manifest = json.loads(s3.objects["runs/run-1/checkpoints/latest.json"])
    assert manifest["path"] == "ckpt-2.pt"
    assert [kind for kind, _ in s3.events] == ["upload", "put", "upload"]


def test_nested_checkpoint_files_keep_their_relative_path(sync, s3, ckpt_dir):
    _write(ckpt_dir / "epoch-3" / "model.bin", b"m", 1_000_000_000)

    sync.sync(final=True)

    assert "runs/run-1/checkpoints/epoch-3/model.bin" in s3.objects
    assert json.loads(s3.objects["runs/run-1/checkpoints/latest.json"])["step"] is None
