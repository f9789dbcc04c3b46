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


class WallClock:
    """The time file mtimes are compared with, in ns; tests set it."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def wall_clock() -> WallClock:
    return WallClock()


@pytest.fixture
def sync(s3: RecordingS3, ckpt_dir: Path, wall_clock: WallClock) -> CheckpointSync:
    return CheckpointSync(
        s3,
        "bucket",
        "run-1",
        2,
        ckpt_dir,
        clock=lambda: "2026-01-01T00:00:00Z",
        wall_clock_ns=wall_clock,
    )


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
    assert s3.events == [
        ("upload", "runs/run-1/checkpoints/ckpt-000020.pt"),
        ("put", manifest_key),
        ("upload", "runs/run-1/checkpoints/ckpt-000010.pt"),
    ]
    assert s3.manifest_targets_present == [True]
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


def test_given_several_new_checkpoints_when_synced_then_the_newest_goes_first(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-000001.pt", b"one", 1_000_000_000)
    _write(ckpt_dir / "ckpt-000003.pt", b"three", 3_000_000_000)
    _write(ckpt_dir / "ckpt-000002.pt", b"two", 2_000_000_000)
    sync.sync()

    assert sync.sync() == ["ckpt-000003.pt", "ckpt-000002.pt", "ckpt-000001.pt"]

    manifest_key = "runs/run-1/checkpoints/latest.json"
    assert s3.events[:2] == [
        ("upload", "runs/run-1/checkpoints/ckpt-000003.pt"),
        ("put", manifest_key),
    ]
    assert json.loads(s3.objects[manifest_key])["step"] == 3


@pytest.mark.parametrize(("killed", "expected"), [(False, ["b.pt", "a.pt"]), (True, [])])
def test_given_files_seen_once_when_the_script_died_then_only_a_clean_exit_trusts_them(
    sync, ckpt_dir, killed, expected
):
    _write(ckpt_dir / "a.pt", b"a", 1_000_000_000)
    _write(ckpt_dir / "b.pt", b"b", 2_000_000_000)
    sync.sync()

    assert sync.sync(final=True, killed=killed) == expected


def test_given_a_kill_when_a_file_was_still_being_written_then_it_is_never_uploaded(
    sync, s3, ckpt_dir, wall_clock
):
    _write(ckpt_dir / "ckpt-1.pt", b"done", 1_000_000_000)
    _write(ckpt_dir / "ckpt-2.pt", b"hal", 2_000_000_000)
    sync.sync()
    _write(ckpt_dir / "ckpt-2.pt", b"half-wr", 3_000_000_000)  # still growing
    assert sync.sync() == ["ckpt-1.pt"]

    _write(ckpt_dir / "ckpt-2.pt", b"half-writ", 3_100_000_000)  # the last write before death
    wall_clock.ns = 3_200_000_000
    sync.before_kill()
    _write(ckpt_dir / "ckpt-3.pt", b"never seen", 3_200_000_001)  # in the instant before SIGKILL
    # Dead now: the torn files hold still, scan after scan, like complete ones.
    sync.sync()
    sync.sync()

    assert sync.sync(final=True, killed=True) == []
    assert [key for kind, key in s3.events if kind == "upload"] == [
        "runs/run-1/checkpoints/ckpt-1.pt"
    ]
    assert json.loads(s3.objects["runs/run-1/checkpoints/latest.json"])["path"] == "ckpt-1.pt"


def test_given_a_kill_then_a_file_seen_once_counts_only_if_untouched_for_a_second(
    sync, ckpt_dir, wall_clock
):
    _write(ckpt_dir / "ckpt-10.pt", b"ten", 1_000_000_000)
    _write(ckpt_dir / "ckpt-20.pt", b"twenty", 2_500_000_000)
    sync.sync()  # one scan only: neither has settled by the two-scan rule

    wall_clock.ns = 3_000_000_000  # ckpt-10 untouched for 2 s, ckpt-20 for 0.5 s
    sync.before_kill()

    assert sync.sync(final=True, killed=True) == ["ckpt-10.pt"]


def test_given_a_settled_checkpoint_whose_upload_failed_when_killed_then_the_final_sync_sends_it(
    sync, s3, ckpt_dir, monkeypatch
):
    _write(ckpt_dir / "ckpt-7.pt", b"seven", 1_000_000_000)
    sync.sync()
    real_upload = s3.upload_file

    def failing(*args: Any, **kwargs: Any) -> None:
        raise OSError("network down")

    monkeypatch.setattr(s3, "upload_file", failing)
    with pytest.raises(OSError):
        sync.sync()
    monkeypatch.setattr(s3, "upload_file", real_upload)
    sync.before_kill()

    assert sync.sync(final=True, killed=True) == ["ckpt-7.pt"]


def test_given_the_checkpoint_resumed_from_when_it_is_marked_present_then_it_is_not_uploaded_again(
    sync, s3, ckpt_dir
):
    _write(ckpt_dir / "ckpt-40.pt", b"forty", 1_000_000_000)
    sync.mark_present("ckpt-40.pt", hashlib.sha256(b"forty").hexdigest(), "T0")

    sync.sync()
    assert sync.sync(final=True) == []
    assert s3.events == []

    _write(ckpt_dir / "ckpt-40.pt", b"forty, rewritten", 2_000_000_000)
    assert sync.sync(final=True) == ["ckpt-40.pt"]
