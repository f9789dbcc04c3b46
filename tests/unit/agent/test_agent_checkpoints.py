"""Checkpoint sync: only complete checkpoints (a top-level file or folder), each upload a version
under keys of its own, latest.json moved only once every file of it is in S3, older versions
deleted only after the manifest dropped them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from instance_agent import checkpoints
from instance_agent.checkpoint_manifest import CheckpointFile, CheckpointVersion, parse_manifest
from instance_agent.checkpoints import (
    FOLDER_QUIET_SECONDS,
    CheckpointSync,
    NotDurable,
    is_candidate,
    open_tracker,
)
from instance_agent.inotify import CompletionTracker

RUN = "run-1"
PREFIX = f"runs/{RUN}/checkpoints/"
MANIFEST = f"{PREFIX}latest.json"
S = 1_000_000_000  # ns per second: file mtimes and the wall clock are in ns
UPLOADED_AT = "2026-01-01T00:00:00Z"

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def vkey(version: str, relative: str) -> str:
    """Where one file of one version lives in S3 (the documented layout)."""
    return f"{PREFIX}v/{version}/{relative}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def manifest_keys(manifest: dict[str, Any]) -> list[str]:
    return [
        vkey(entry["version"], item["path"])
        for entry in manifest["checkpoints"]
        for item in entry["files"]
    ]


class RecordingS3:
    """Records uploads, puts and deletes in order; stands in for the S3 client. On each put of
    latest.json it notes which of the keys the manifest names were not in S3 at that moment.
    `before_upload(key, filename)` and `after_upload(key, filename)` run around an upload's
    read of its file (a test's race)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.objects: dict[str, bytes] = {}
        self.extra_args: dict[str, dict[str, Any]] = {}
        self.put_args: dict[str, dict[str, Any]] = {}
        self.manifests: list[dict[str, Any]] = []
        self.missing_at_put: list[list[str]] = []
        self.before_upload: Callable[[str, str], None] | None = None
        self.after_upload: Callable[[str, str], None] | None = None

    def upload_file(self, filename: str, bucket: str, key: str, ExtraArgs: dict[str, Any]) -> None:
        if self.before_upload is not None:
            self.before_upload(key, filename)
        self.objects[key] = Path(filename).read_bytes()  # FileNotFoundError, as s3transfer's
        self.events.append(("upload", key))
        self.extra_args[key] = ExtraArgs
        if self.after_upload is not None:
            self.after_upload(key, filename)

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> None:
        if Key == MANIFEST:
            manifest = json.loads(Body)
            self.manifests.append(manifest)
            self.missing_at_put.append(
                [key for key in manifest_keys(manifest) if key not in self.objects]
            )
        self.events.append(("put", Key))
        self.objects[Key] = Body
        self.put_args[Key] = kwargs

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        for item in Delete["Objects"]:
            self.events.append(("delete", item["Key"]))
            self.objects.pop(item["Key"], None)
        return {}

    def keys(self, kind: str) -> list[str]:
        return [key for event, key in self.events if event == kind]

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.objects[MANIFEST])

    def listed(self) -> list[tuple[str, str]]:
        """(version, name) of each checkpoint latest.json lists now, in order."""
        return [(entry["version"], entry["name"]) for entry in self.manifest()["checkpoints"]]


class Clock:
    """A settable clock: the wall clock file mtimes are compared with (ns), or the monotonic
    one (s)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def s3() -> RecordingS3:
    return RecordingS3()


@pytest.fixture
def ckpt_dir(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoints"
    path.mkdir()
    return path


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return tmp_path / "scratch" / "checkpoint-snapshots"


@pytest.fixture
def wall_clock() -> Clock:
    return Clock(100 * S)  # files in these tests are written at 1..20 s: long quiet by then


@pytest.fixture
def monotonic() -> Clock:
    return Clock(0.0)


@pytest.fixture
def make_sync(
    s3: RecordingS3, ckpt_dir: Path, snapshot_dir: Path, wall_clock: Clock, monotonic: Clock
) -> Callable[..., CheckpointSync]:
    def build(**overrides: Any) -> CheckpointSync:
        arguments: dict[str, Any] = {
            "tracker": None,  # the stability rule unless a test gives a tracker
            "clock": lambda: UPLOADED_AT,
            "wall_clock_ns": wall_clock,
            "monotonic": monotonic,
            **overrides,
        }
        return CheckpointSync(s3, "bucket", RUN, 2, ckpt_dir, snapshot_dir, **arguments)

    return build


@pytest.fixture
def sync(make_sync: Callable[..., CheckpointSync]) -> CheckpointSync:
    return make_sync()


@pytest.fixture
def tracker(ckpt_dir: Path) -> Iterator[CompletionTracker]:
    opened = open_tracker(ckpt_dir)
    assert opened is not None, "inotify is expected to work here"
    yield opened
    opened.close()


def _write(path: Path, data: bytes, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _version(
    version: str, name: str, saved_s: float, files: dict[str, bytes], attempt: int = 1
) -> CheckpointVersion:
    """A version as an earlier attempt's latest.json lists it."""
    return CheckpointVersion(
        version=version,
        name=name,
        kind="file" if list(files) == [name] else "folder",
        files=tuple(CheckpointFile(path, sha(data), len(data)) for path, data in files.items()),
        attempt=attempt,
        saved_at=iso(saved_s),
        uploaded_at=iso(saved_s + 1),
    )


HF_FILES = {
    "checkpoint-50/model.safetensors": b"model-50",
    "checkpoint-50/optimizer.pt": b"optimizer-50",
    "checkpoint-50/trainer_state.json": json.dumps({"global_step": 50}).encode(),
    "checkpoint-50/training_args.bin": b"args",
}


def _write_hf_folder(ckpt_dir: Path, files: dict[str, bytes] = HF_FILES, first_s: int = 1) -> None:
    for offset, (relative, data) in enumerate(files.items()):
        _write(ckpt_dir / relative, data, (first_s + offset) * S)


# Names.


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("ckpt-10.pt", True),
        ("epoch_3/model.bin", True),
        ("checkpoint-50/.metadata", True),  # torch.distributed.checkpoint's: part of the folder
        ("ckpt-10.pt.tmp", False),
        ("ckpt.partial", False),
        ("ckpt.part", False),
        ("epoch_3/model.bin.tmp", False),
        (".ckpt-10.pt", False),
        (".hidden/ckpt.pt", False),
        (".runctl-restore-1-000003/ckpt.pt", False),
        ("latest.json", False),
        ("sub/latest.json", True),
    ],
)
def test_temporary_and_hidden_top_level_names_are_not_checkpoints(relative, expected):
    assert is_candidate(relative) is expected


# Completeness by the stability rule (no inotify).


def test_a_new_file_is_uploaded_only_once_it_held_still_for_two_scans(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-1.pt", b"aaa", 1 * S)

    assert sync.sync() == []
    assert s3.events == []
    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects[vkey("2-000001", "ckpt-1.pt")] == b"aaa"


def test_a_changing_file_is_skipped_until_it_is_stable(sync, s3, ckpt_dir):
    path = ckpt_dir / "ckpt-1.pt"
    _write(path, b"a", 1 * S)
    sync.sync()
    _write(path, b"ab", 2 * S)  # still being written

    assert sync.sync() == []
    assert s3.events == []
    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects[vkey("2-000001", "ckpt-1.pt")] == b"ab"


def test_temporary_files_are_never_uploaded_even_when_stable(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-1.pt.tmp", b"half", 1 * S)
    _write(ckpt_dir / ".ckpt-2.pt", b"half", 1 * S)
    _write(ckpt_dir / "latest.json", b"{}", 1 * S)

    sync.sync()
    sync.sync()
    sync.sync(final=True)

    assert s3.events == []


def test_the_final_sync_uploads_files_seen_once(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-9.pt", b"last", 1 * S)

    assert sync.sync(final=True) == ["ckpt-9.pt"]
    assert s3.listed() == [("2-000001", "ckpt-9.pt")]


def test_an_unchanged_checkpoint_is_not_uploaded_again(sync, s3, ckpt_dir):
    _write(ckpt_dir / "best.pt", b"v1", 1 * S)
    sync.sync(final=True)
    sync.sync()
    sync.sync()
    sync.sync(final=True)

    assert s3.keys("upload") == [vkey("2-000001", "best.pt")]
    assert s3.keys("put") == [MANIFEST]


def test_the_manifest_is_written_after_each_upload_and_lists_the_newest_first(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-000020.pt", b"newer", 2 * S)
    _write(ckpt_dir / "ckpt-000010.pt", b"older", 1 * S)

    assert sync.sync(final=True) == ["ckpt-000020.pt", "ckpt-000010.pt"]

    assert s3.events == [
        ("upload", vkey("2-000001", "ckpt-000020.pt")),
        ("put", MANIFEST),
        ("upload", vkey("2-000002", "ckpt-000010.pt")),
        ("put", MANIFEST),
    ]
    assert s3.missing_at_put == [[], []]
    newer = {
        "version": "2-000001",
        "name": "ckpt-000020.pt",
        "kind": "file",
        "step": 20,
        "attempt": 2,
        "saved_at": "1970-01-01T00:00:02+00:00",
        "uploaded_at": UPLOADED_AT,
        "files": [{"path": "ckpt-000020.pt", "sha256": sha(b"newer"), "size": 5}],
    }
    older = {
        **newer,
        "version": "2-000002",
        "name": "ckpt-000010.pt",
        "step": 10,
        "saved_at": "1970-01-01T00:00:01+00:00",
        "files": [{"path": "ckpt-000010.pt", "sha256": sha(b"older"), "size": 5}],
    }
    assert s3.manifests == [
        {"format": 2, "checkpoints": [newer]},
        {"format": 2, "checkpoints": [newer, older]},
    ]
    assert sync.newest is not None and sync.newest.version == "2-000001"


def test_uploads_and_the_manifest_ask_s3_for_a_sha256_checksum(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-1.pt", b"x", 1 * S)

    sync.sync(final=True)

    assert s3.extra_args[vkey("2-000001", "ckpt-1.pt")] == {"ChecksumAlgorithm": "SHA256"}
    assert s3.put_args[MANIFEST]["ChecksumAlgorithm"] == "SHA256"


def test_an_older_checkpoint_uploaded_later_does_not_move_the_manifest_back(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-2.pt", b"new", 2 * S)
    sync.sync(final=True)
    _write(ckpt_dir / "notes" / "ckpt-1.pt", b"old", 1 * S)

    assert sync.sync(final=True) == ["notes"]

    assert s3.listed() == [("2-000001", "ckpt-2.pt"), ("2-000002", "notes")]
    assert sync.newest is not None and sync.newest.name == "ckpt-2.pt"
    assert [kind for kind, _ in s3.events] == ["upload", "put", "upload", "put"]


def test_given_several_new_checkpoints_when_synced_then_the_newest_goes_first(sync, s3, ckpt_dir):
    _write(ckpt_dir / "ckpt-000001.pt", b"one", 1 * S)
    _write(ckpt_dir / "ckpt-000003.pt", b"three", 3 * S)
    _write(ckpt_dir / "ckpt-000002.pt", b"two", 2 * S)
    sync.sync()

    assert sync.sync() == ["ckpt-000003.pt", "ckpt-000002.pt", "ckpt-000001.pt"]

    assert s3.events[:2] == [("upload", vkey("2-000001", "ckpt-000003.pt")), ("put", MANIFEST)]
    assert s3.manifests[0]["checkpoints"][0]["step"] == 3
    assert [entry["step"] for entry in s3.manifest()["checkpoints"]] == [3, 2, 1]


@pytest.mark.parametrize(("killed", "expected"), [(False, ["b.pt", "a.pt"]), (True, [])])
def test_given_files_seen_once_when_the_script_died_then_only_a_clean_exit_trusts_them(
    sync, ckpt_dir, killed, expected
):
    _write(ckpt_dir / "a.pt", b"a", 1 * S)
    _write(ckpt_dir / "b.pt", b"b", 2 * S)
    sync.sync()

    assert sync.sync(final=True, killed=killed) == expected


def test_given_a_kill_when_a_file_was_still_being_written_then_it_is_never_uploaded(
    sync, s3, ckpt_dir, wall_clock
):
    _write(ckpt_dir / "ckpt-1.pt", b"done", 1 * S)
    _write(ckpt_dir / "ckpt-2.pt", b"hal", 2 * S)
    sync.sync()
    _write(ckpt_dir / "ckpt-2.pt", b"half-wr", 3 * S)  # still growing
    assert sync.sync() == ["ckpt-1.pt"]

    _write(ckpt_dir / "ckpt-2.pt", b"half-writ", 3_100_000_000)  # the last write before death
    wall_clock.now = 3_200_000_000
    sync.before_kill()
    _write(ckpt_dir / "ckpt-3.pt", b"never seen", 3_200_000_001)  # in the instant before SIGKILL
    # Dead now: the torn files hold still, scan after scan, like complete ones.
    sync.sync()
    sync.sync()

    assert sync.sync(final=True, killed=True) == []
    assert s3.keys("upload") == [vkey("2-000001", "ckpt-1.pt")]
    assert s3.listed() == [("2-000001", "ckpt-1.pt")]


def test_given_a_kill_then_a_file_seen_once_counts_only_if_untouched_for_a_second(
    sync, ckpt_dir, wall_clock
):
    _write(ckpt_dir / "ckpt-10.pt", b"ten", 1 * S)
    _write(ckpt_dir / "ckpt-20.pt", b"twenty", 2_500_000_000)
    sync.sync()  # one scan only: neither has settled by the two-scan rule

    wall_clock.now = 3 * S  # ckpt-10 untouched for 2 s, ckpt-20 for 0.5 s
    sync.before_kill()

    assert sync.sync(final=True, killed=True) == ["ckpt-10.pt"]


def test_given_a_settled_checkpoint_whose_upload_failed_when_killed_then_the_final_sync_sends_it(
    sync, s3, ckpt_dir, monkeypatch
):
    _write(ckpt_dir / "ckpt-7.pt", b"seven", 1 * S)
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
    assert s3.manifest()["checkpoints"][0]["files"][0]["sha256"] == sha(b"seven")


# Folders: one checkpoint, one version.


def test_a_hugging_face_folder_is_uploaded_as_one_version_under_one_prefix(sync, s3, ckpt_dir):
    _write_hf_folder(ckpt_dir)
    sync.sync()

    assert sync.sync() == ["checkpoint-50"]

    assert sorted(s3.keys("upload")) == sorted(vkey("2-000001", path) for path in HF_FILES)
    for relative, data in HF_FILES.items():
        assert s3.objects[vkey("2-000001", relative)] == data
    assert s3.manifest() == {
        "format": 2,
        "checkpoints": [
            {
                "version": "2-000001",
                "name": "checkpoint-50",
                "kind": "folder",
                "step": 50,
                "attempt": 2,
                "saved_at": "1970-01-01T00:00:04+00:00",  # its newest file's mtime
                "uploaded_at": UPLOADED_AT,
                "files": [
                    {"path": path, "sha256": sha(data), "size": len(data)}
                    for path, data in sorted(HF_FILES.items())
                ],
            }
        ],
    }


def test_a_hugging_face_folder_is_not_uploaded_before_its_trainer_state_is_written(
    sync, s3, ckpt_dir
):
    without_state = {
        path: data for path, data in HF_FILES.items() if not path.endswith("trainer_state.json")
    }
    _write_hf_folder(ckpt_dir, without_state)  # Trainer wrote training_args.bin, not the state

    for _ in range(3):
        assert sync.sync() == []
    assert s3.events == []

    _write(ckpt_dir / "checkpoint-50" / "trainer_state.json", b'{"global_step": 50}', 10 * S)
    sync.sync()
    assert sync.sync() == ["checkpoint-50"]
    assert len(s3.manifest()["checkpoints"][0]["files"]) == 4


def test_a_folder_is_not_uploaded_until_nothing_in_it_changed_for_the_quiet_time(
    sync, s3, ckpt_dir, wall_clock
):
    _write(ckpt_dir / "epoch-3" / "model.bin", b"m", 5 * S)
    _write(ckpt_dir / "epoch-3" / "optim.bin", b"o", 10 * S)
    wall_clock.now = 10 * S + int(FOLDER_QUIET_SECONDS * S) - 1  # newest file just too young

    sync.sync()
    assert sync.sync() == []
    assert sync.sync() == []
    assert s3.events == []

    wall_clock.now = 10 * S + int(FOLDER_QUIET_SECONDS * S)
    assert sync.sync() == ["epoch-3"]
    assert s3.listed() == [("2-000001", "epoch-3")]
    assert s3.manifest()["checkpoints"][0]["step"] == 3


def test_the_manifest_moves_only_once_every_file_of_the_version_is_in_s3(sync, s3, ckpt_dir):
    _write_hf_folder(ckpt_dir)
    _write(ckpt_dir / "ckpt-000002.pt", b"two", 20 * S)

    sync.sync(final=True)

    assert len(s3.manifests) == 2
    assert s3.missing_at_put == [[], []]
    put_indexes = [i for i, event in enumerate(s3.events) if event == ("put", MANIFEST)]
    folder_uploads = [
        i for i, (kind, key) in enumerate(s3.events) if kind == "upload" and "checkpoint-50" in key
    ]
    assert len(folder_uploads) == 4
    # The folder went second: its manifest put comes after each of its four uploads.
    assert max(folder_uploads) < put_indexes[1]
    assert min(folder_uploads) > put_indexes[0]


# Versions, retention and rewrites in place.


def test_a_rewritten_file_goes_up_as_a_new_version_and_leaves_the_old_one_alone(sync, s3, ckpt_dir):
    path = ckpt_dir / "best.pt"
    _write(path, b"v1", 1 * S)
    sync.sync(final=True)
    _write(path, b"v2", 2 * S)

    assert sync.sync(final=True) == ["best.pt"]

    assert s3.keys("upload") == [vkey("2-000001", "best.pt"), vkey("2-000002", "best.pt")]
    assert s3.objects[vkey("2-000001", "best.pt")] == b"v1"
    assert s3.objects[vkey("2-000002", "best.pt")] == b"v2"
    assert s3.keys("delete") == []
    assert s3.listed() == [("2-000002", "best.pt"), ("2-000001", "best.pt")]


def test_with_keep_two_the_oldest_version_is_deleted_only_after_the_manifest_dropped_it(
    make_sync, s3, ckpt_dir
):
    sync = make_sync(keep=2)
    path = ckpt_dir / "best.pt"
    for second, data in ((1, b"v1"), (2, b"v2"), (3, b"v3")):
        _write(path, data, second * S)
        assert sync.sync(final=True) == ["best.pt"]

    v1, v2, v3 = (vkey(f"2-00000{n}", "best.pt") for n in (1, 2, 3))
    assert s3.events == [
        ("upload", v1),
        ("put", MANIFEST),
        ("upload", v2),
        ("put", MANIFEST),
        ("upload", v3),
        ("put", MANIFEST),
        ("delete", v1),
    ]
    assert s3.listed() == [("2-000003", "best.pt"), ("2-000002", "best.pt")]
    assert v1 not in s3.objects
    assert (s3.objects[v2], s3.objects[v3]) == (b"v2", b"v3")
    assert [version.version for version in sync.versions] == ["2-000003", "2-000002"]


def test_retention_deletes_every_file_of_a_dropped_folder_version(make_sync, s3, ckpt_dir):
    sync = make_sync(keep=1)
    _write_hf_folder(ckpt_dir)
    sync.sync(final=True)
    _write(ckpt_dir / "checkpoint-60" / "model.safetensors", b"model-60", 30 * S)
    _write(ckpt_dir / "checkpoint-60" / "trainer_state.json", b'{"global_step": 60}', 31 * S)

    assert sync.sync(final=True) == ["checkpoint-60"]

    assert sorted(s3.keys("delete")) == sorted(vkey("2-000001", path) for path in HF_FILES)
    last_put = max(i for i, event in enumerate(s3.events) if event == ("put", MANIFEST))
    assert all(kind != "delete" for kind, _ in s3.events[:last_put])
    assert s3.listed() == [("2-000002", "checkpoint-60")]


# A checkpoint that changes or vanishes while it is sent.


def test_a_file_changed_during_its_in_place_upload_is_not_listed_and_its_objects_are_deleted(
    sync, s3, ckpt_dir, monkeypatch
):
    monkeypatch.setattr(checkpoints, "SNAPSHOT_MAX_BYTES", 0)  # too big to copy: sent in place
    _write(ckpt_dir / "epoch-1" / "a.bin", b"a-old", 1 * S)
    _write(ckpt_dir / "epoch-1" / "b.bin", b"b", 2 * S)
    rewritten: list[str] = []

    def rewrite_a_while_sending_it(key: str, filename: str) -> None:
        if key.endswith("/a.bin") and not rewritten:
            _write(Path(filename), b"a-new!", 3 * S)  # the script saves again meanwhile
            rewritten.append(key)

    s3.before_upload = rewrite_a_while_sending_it
    sync.sync()

    assert sync.sync() == []

    sent = [vkey("2-000001", "epoch-1/a.bin"), vkey("2-000001", "epoch-1/b.bin")]
    assert s3.events == [("upload", sent[0]), ("upload", sent[1])] + [
        ("delete", key) for key in sent
    ]
    assert MANIFEST not in s3.objects and s3.manifests == []
    assert sync.versions == []

    assert sync.sync() == []  # it changed since the last scan: not settled yet
    assert sync.sync() == ["epoch-1"]
    assert s3.listed() == [("2-000002", "epoch-1")]
    files = s3.manifest()["checkpoints"][0]["files"]
    assert files[0] == {"path": "epoch-1/a.bin", "sha256": sha(b"a-new!"), "size": 6}
    assert s3.objects[vkey("2-000002", "epoch-1/a.bin")] == b"a-new!"


def test_a_file_changed_while_its_snapshot_was_copied_is_not_sent_and_is_tried_again(
    sync, s3, ckpt_dir, snapshot_dir, monkeypatch
):
    _write(ckpt_dir / "ckpt-1.pt", b"old", 1 * S)
    real_copyfile = shutil.copyfile
    rewritten: list[str] = []

    def copy_then_rewrite(source: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        copied = real_copyfile(source, target, *args, **kwargs)
        if not rewritten:
            _write(Path(source), b"new!", 2 * S)  # the script saves again during the copy
            rewritten.append(str(source))
        return copied

    monkeypatch.setattr(checkpoints.shutil, "copyfile", copy_then_rewrite)
    sync.sync()

    assert sync.sync() == []

    assert rewritten == [str(ckpt_dir / "ckpt-1.pt")]
    assert s3.events == []
    assert list(snapshot_dir.iterdir()) == []  # the snapshot is not left behind
    assert sync.sync() == []
    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects[vkey("2-000002", "ckpt-1.pt")] == b"new!"
    assert s3.manifest()["checkpoints"][0]["files"][0]["sha256"] == sha(b"new!")


def test_a_checkpoint_that_vanishes_while_its_snapshot_is_copied_is_skipped_quietly(
    sync, s3, ckpt_dir, monkeypatch
):
    _write(ckpt_dir / "checkpoint-10" / "model.bin", b"ten", 1 * S)
    _write(ckpt_dir / "checkpoint-20" / "model.bin", b"twenty", 2 * S)
    real_copyfile = shutil.copyfile

    def rotate_then_copy(source: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        if "checkpoint-20" in str(source):  # save_total_limit removes it (the newest goes first)
            shutil.rmtree(ckpt_dir / "checkpoint-20")
        return real_copyfile(source, target, *args, **kwargs)

    monkeypatch.setattr(checkpoints.shutil, "copyfile", rotate_then_copy)
    sync.sync()

    assert sync.sync() == ["checkpoint-10"]

    assert s3.listed() == [("2-000002", "checkpoint-10")]
    assert s3.keys("upload") == [vkey("2-000002", "checkpoint-10/model.bin")]


def test_a_folder_that_vanishes_between_its_in_place_uploads_is_skipped_and_cleaned_up(
    sync, s3, ckpt_dir, monkeypatch
):
    monkeypatch.setattr(checkpoints, "SNAPSHOT_MAX_BYTES", 0)
    _write(ckpt_dir / "checkpoint-10" / "model.bin", b"ten", 1 * S)
    _write(ckpt_dir / "checkpoint-20" / "a.bin", b"a", 2 * S)
    _write(ckpt_dir / "checkpoint-20" / "b.bin", b"b", 2 * S)

    def rotate_after_the_first_file(key: str, filename: str) -> None:
        if key.endswith("checkpoint-20/a.bin"):
            shutil.rmtree(ckpt_dir / "checkpoint-20")  # save_total_limit, while a went up

    sync.sync()
    s3.after_upload = rotate_after_the_first_file

    assert sync.sync() == ["checkpoint-10"]

    first = vkey("2-000001", "checkpoint-20/a.bin")
    assert s3.events[:2] == [("upload", first), ("delete", first)]
    assert first not in s3.objects
    assert s3.listed() == [("2-000002", "checkpoint-10")]


def test_a_file_that_vanishes_during_its_in_place_upload_is_skipped_and_the_others_still_go(
    sync, s3, ckpt_dir, monkeypatch
):
    monkeypatch.setattr(checkpoints, "SNAPSHOT_MAX_BYTES", 0)
    _write(ckpt_dir / "checkpoint-10" / "model.bin", b"ten", 1 * S)
    _write(ckpt_dir / "checkpoint-20" / "a.bin", b"a", 2 * S)
    _write(ckpt_dir / "checkpoint-20" / "b.bin", b"b", 2 * S)

    def rotate_during_the_upload(key: str, filename: str) -> None:
        if key.endswith("checkpoint-20/b.bin"):
            shutil.rmtree(ckpt_dir / "checkpoint-20")  # s3transfer opens each part lazily

    sync.sync()
    s3.before_upload = rotate_during_the_upload

    assert sync.sync() == ["checkpoint-10"]

    first = vkey("2-000001", "checkpoint-20/a.bin")
    assert ("delete", first) in s3.events
    assert s3.listed() == [("2-000002", "checkpoint-10")]


# Completeness by inotify.


@linux_only
def test_with_inotify_a_file_written_and_closed_is_uploaded_on_the_first_pass(
    make_sync, tracker, s3, ckpt_dir
):
    sync = make_sync(tracker=tracker)
    (ckpt_dir / "ckpt-1.pt").write_bytes(b"weights")

    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects[vkey("2-000001", "ckpt-1.pt")] == b"weights"


@linux_only
def test_with_inotify_a_file_still_open_for_writing_is_not_uploaded_however_still_it_holds(
    make_sync, tracker, s3, ckpt_dir
):
    sync = make_sync(tracker=tracker)
    with open(ckpt_dir / "ckpt-1.pt", "wb") as handle:
        handle.write(b"half")
        handle.flush()
        # Two scans with the same size and mtime: the stability rule would send it by now.
        assert sync.sync() == []
        assert sync.sync() == []
        assert s3.events == []
        handle.write(b"-and-the-rest")

    assert sync.sync() == ["ckpt-1.pt"]
    assert s3.objects[vkey("2-000001", "ckpt-1.pt")] == b"half-and-the-rest"


@linux_only
def test_with_inotify_a_file_closed_after_before_kill_is_not_uploaded_by_the_killed_final_sync(
    make_sync, tracker, s3, ckpt_dir
):
    sync = make_sync(tracker=tracker)
    (ckpt_dir / "ckpt-1.pt").write_bytes(b"complete")
    handle = open(ckpt_dir / "ckpt-2.pt", "wb")  # noqa: SIM115 - closed by "the kill" below
    handle.write(b"cut sh")
    handle.flush()

    sync.before_kill()
    handle.close()  # the kernel closes a killed script's files: IN_CLOSE_WRITE for a torn one

    assert sync.sync(final=True, killed=True) == ["ckpt-1.pt"]
    assert s3.keys("upload") == [vkey("2-000001", "ckpt-1.pt")]
    assert sync.sync(final=True, killed=True) == []


@linux_only
def test_with_inotify_a_file_renamed_into_place_is_uploaded_at_once(
    make_sync, tracker, s3, ckpt_dir
):
    sync = make_sync(tracker=tracker)
    with open(ckpt_dir / "ckpt-3.pt.tmp", "wb") as handle:
        handle.write(b"atomic")
        assert sync.sync() == []
    os.replace(ckpt_dir / "ckpt-3.pt.tmp", ckpt_dir / "ckpt-3.pt")

    assert sync.sync() == ["ckpt-3.pt"]
    assert s3.keys("upload") == [vkey("2-000001", "ckpt-3.pt")]
    assert s3.manifest()["checkpoints"][0]["step"] == 3


@linux_only
def test_with_inotify_a_folder_saved_before_its_watch_existed_goes_up_once_it_held_still(
    make_sync, tracker, s3, ckpt_dir
):
    sync = make_sync(tracker=tracker)
    # Trainer makes checkpoint-50/ and saves into it at once: inotify sees none of those closes.
    _write_hf_folder(ckpt_dir)

    assert sync.sync() == []
    assert sync.sync() == ["checkpoint-50"]
    assert s3.listed() == [("2-000001", "checkpoint-50")]
    assert len(s3.manifest()["checkpoints"][0]["files"]) == len(HF_FILES)


@linux_only
def test_with_inotify_the_restored_checkpoint_is_vouched_for_and_not_sent_until_rewritten(
    make_sync, s3, ckpt_dir
):
    # Restored before the watch starts, as the attempt does: inotify never saw it closed.
    _write(ckpt_dir / "ckpt-40.pt", b"forty", 1 * S)
    tracker = open_tracker(ckpt_dir)
    assert tracker is not None
    try:
        sync = make_sync(tracker=tracker)
        restored = _version("1-000004", "ckpt-40.pt", 1, {"ckpt-40.pt": b"forty"})
        sync.adopt([restored])
        sync.mark_present(restored)

        assert sync.sync() == []
        assert sync.sync(final=True, killed=True) == []
        assert tracker.is_complete("ckpt-40.pt")
        (ckpt_dir / "ckpt-40.pt").write_bytes(b"forty-one")

        assert sync.sync() == ["ckpt-40.pt"]
        assert s3.listed() == [("2-000001", "ckpt-40.pt"), ("1-000004", "ckpt-40.pt")]
    finally:
        tracker.close()


# Checkpoints that are never durable.


def test_a_checkpoint_that_changes_on_every_pass_is_warned_about_once(
    make_sync, s3, ckpt_dir, monotonic, caplog
):
    sync = make_sync(not_durable_warn_seconds=10.0)
    caplog.set_level(logging.WARNING, logger="instance_agent.checkpoints")
    _write(ckpt_dir / "steady.pt", b"steady", 1 * S)
    for n in range(6):
        monotonic.now = n * 4.0  # 0, 4, ..., 20 s
        _write(ckpt_dir / "ckpt.pt", b"x" * (n + 1), (2 + n) * S)  # rewritten in place again
        sync.sync()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "checkpoint ckpt.pt has kept changing for 12 s" in warnings[0].getMessage()
    assert sync.not_durable == {"ckpt.pt": NotDurable("ckpt.pt", 12.0)}
    assert s3.listed() == [("2-000001", "steady.pt")]


def test_a_checkpoint_rewritten_often_but_durable_in_between_is_not_warned_about(
    make_sync, s3, ckpt_dir, monotonic, caplog
):
    sync = make_sync(not_durable_warn_seconds=10.0)
    caplog.set_level(logging.WARNING, logger="instance_agent.checkpoints")
    path = ckpt_dir / "best.pt"
    # Rewritten in place right after each upload, for 20 s in all: durable every 8 s.
    for n in range(6):
        monotonic.now = n * 4.0
        if n % 2 == 0:
            _write(path, b"x" * (n + 1), (2 + n) * S)
        uploaded = sync.sync()
        assert uploaded == ([] if n % 2 == 0 else ["best.pt"])
    for n in range(6, 10):  # then it holds still, and stays durable
        monotonic.now = n * 4.0
        assert sync.sync() == []

    assert len(s3.manifests) == 3
    assert sync.not_durable == {}
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_complete_checkpoint_superseded_by_newer_kept_ones_is_not_called_not_durable(
    make_sync, ckpt_dir, monotonic, caplog
):
    sync = make_sync(keep=1, not_durable_warn_seconds=10.0)
    caplog.set_level(logging.WARNING, logger="instance_agent.checkpoints")
    # Two saves between two passes: the newer goes up, the older would be rotated out at once.
    _write(ckpt_dir / "ckpt-000001.pt", b"one", 1 * S)
    _write(ckpt_dir / "ckpt-000002.pt", b"two", 2 * S)
    assert sync.sync(final=True) == ["ckpt-000002.pt"]
    for n in range(1, 6):
        monotonic.now = n * 4.0
        sync.sync()

    assert sync.not_durable == {}
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


# Earlier attempts' versions: keep, adopt, mark_present.


def test_given_keep_newer_versions_listed_then_an_older_local_checkpoint_is_not_uploaded(
    make_sync, s3, ckpt_dir
):
    sync = make_sync(keep=2)
    sync.adopt(
        [
            _version("1-000009", "ckpt-000090.pt", 9, {"ckpt-000090.pt": b"90"}),
            _version("1-000008", "ckpt-000080.pt", 8, {"ckpt-000080.pt": b"80"}),
        ]
    )
    _write(ckpt_dir / "ckpt-000070.pt", b"70", 7 * S)  # older than both kept versions

    assert sync.sync(final=True) == []
    assert s3.events == []

    _write(ckpt_dir / "ckpt-000085.pt", b"85", 8 * S + S // 2)  # newer than the oldest kept
    assert sync.sync(final=True) == ["ckpt-000085.pt"]
    assert s3.listed() == [("1-000009", "ckpt-000090.pt"), ("2-000001", "ckpt-000085.pt")]
    assert s3.keys("upload") == [vkey("2-000001", "ckpt-000085.pt")]
    assert s3.keys("delete") == [vkey("1-000008", "ckpt-000080.pt")]


def test_adopted_versions_are_kept_then_rotated_out_with_their_keys_deleted(
    make_sync, s3, ckpt_dir
):
    sync = make_sync(keep=2)
    adopted = [
        _version("1-000002", "checkpoint-20", 2, {"checkpoint-20/model.bin": b"20"}),
        _version("1-000001", "ckpt-000010.pt", 1, {"ckpt-000010.pt": b"10"}),
    ]
    sync.adopt(adopted)
    assert sync.newest == adopted[0]

    _write(ckpt_dir / "ckpt-000030.pt", b"30", 3 * S)
    assert sync.sync(final=True) == ["ckpt-000030.pt"]
    assert s3.listed() == [("2-000001", "ckpt-000030.pt"), ("1-000002", "checkpoint-20")]
    assert s3.keys("delete") == [vkey("1-000001", "ckpt-000010.pt")]
    # The adopted version is carried over as it was.
    assert s3.manifest()["checkpoints"][1] == adopted[0].to_dict()

    _write(ckpt_dir / "ckpt-000040.pt", b"40", 4 * S)
    assert sync.sync(final=True) == ["ckpt-000040.pt"]
    assert s3.keys("delete") == [
        vkey("1-000001", "ckpt-000010.pt"),
        vkey("1-000002", "checkpoint-20/model.bin"),
    ]
    assert s3.events[-2:] == [
        ("put", MANIFEST),
        ("delete", vkey("1-000002", "checkpoint-20/model.bin")),
    ]
    assert s3.listed() == [("2-000002", "ckpt-000040.pt"), ("2-000001", "ckpt-000030.pt")]


def test_a_format_1_version_rotated_out_has_its_legacy_key_deleted(make_sync, s3, ckpt_dir):
    sync = make_sync(keep=1)
    legacy_key = f"{PREFIX}ckpt-000040.pt"
    (legacy,) = parse_manifest(
        {
            "key": legacy_key,
            "path": "ckpt-000040.pt",
            "step": 40,
            "sha256": sha(b"40"),
            "size": 2,
            "uploaded_at": iso(4),
            "attempt": 1,
        },
        RUN,
    )
    sync.adopt([legacy])
    _write(ckpt_dir / "ckpt-000050.pt", b"50", 5 * S)

    assert sync.sync(final=True) == ["ckpt-000050.pt"]

    assert s3.keys("delete") == [legacy_key]
    assert s3.listed() == [("2-000001", "ckpt-000050.pt")]


def test_the_checkpoint_resumed_from_is_not_uploaded_again_until_the_script_changes_it(
    sync, s3, ckpt_dir
):
    _write(ckpt_dir / "checkpoint-40" / "model.bin", b"forty", 1 * S)
    _write(ckpt_dir / "checkpoint-40" / "trainer_state.json", b'{"global_step": 40}', 1 * S)
    restored = _version(
        "1-000004",
        "checkpoint-40",
        1,
        {
            "checkpoint-40/model.bin": b"forty",
            "checkpoint-40/trainer_state.json": b'{"global_step": 40}',
        },
    )
    sync.adopt([restored])
    sync.mark_present(restored)

    sync.sync()
    sync.sync()
    assert sync.sync(final=True) == []
    assert sync.sync(final=True, killed=True) == []
    assert s3.events == []

    _write(ckpt_dir / "checkpoint-40" / "model.bin", b"forty, rewritten", 2 * S)
    assert sync.sync(final=True) == ["checkpoint-40"]
    assert s3.listed() == [("2-000001", "checkpoint-40"), ("1-000004", "checkpoint-40")]


def test_a_restarted_agent_of_the_same_attempt_never_reuses_a_listed_version_id(
    make_sync, s3, ckpt_dir
):
    sync = make_sync(keep=2)  # attempt 2, as the first start of attempt 2 left things
    s3.objects[vkey("2-000001", "ckpt-000010.pt")] = b"10"
    s3.objects[vkey("2-000002", "ckpt-000020.pt")] = b"20"
    sync.adopt(
        [
            _version("2-000002", "ckpt-000020.pt", 2, {"ckpt-000020.pt": b"20"}, attempt=2),
            _version("2-000001", "ckpt-000010.pt", 1, {"ckpt-000010.pt": b"10"}, attempt=2),
        ]
    )
    _write(ckpt_dir / "ckpt-000010.pt", b"10, trained again", 3 * S)

    assert sync.sync(final=True) == ["ckpt-000010.pt"]

    new_version, _ = s3.listed()[0]
    assert new_version not in ("2-000001", "2-000002")
    assert s3.missing_at_put == [[]]
    assert s3.objects[vkey(new_version, "ckpt-000010.pt")] == b"10, trained again"


# The step in the manifest.


@pytest.mark.parametrize(
    "snapshot",
    [
        True,
        False,
    ],
    ids=["snapshot", "in-place"],
)
def test_the_manifest_step_comes_from_the_checkpoint_itself_not_only_its_name(
    sync, s3, ckpt_dir, monkeypatch, snapshot
):
    if not snapshot:
        monkeypatch.setattr(checkpoints, "SNAPSHOT_MAX_BYTES", 0)
    _write(ckpt_dir / "best" / "model.safetensors", b"model", 1 * S)
    _write(ckpt_dir / "best" / "trainer_state.json", b'{"global_step": 75}', 2 * S)
    _write(ckpt_dir / "best" / "training_args.bin", b"args", 1 * S)

    assert sync.sync(final=True) == ["best"]

    assert s3.manifest()["checkpoints"][0]["step"] == 75


def test_only_a_running_scripts_checkpoints_are_copied_aside_before_their_upload(
    sync, s3, ckpt_dir, monkeypatch
):
    # Given a copy that records what it copies
    real_copyfile = shutil.copyfile
    copied: list[str] = []

    def recording_copy(source: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        copied.append(Path(source).name)
        return real_copyfile(source, target, *args, **kwargs)

    monkeypatch.setattr(checkpoints.shutil, "copyfile", recording_copy)

    # When a checkpoint is synced while the script runs, and another once it has exited
    _write(ckpt_dir / "ckpt-1.pt", b"one", 1 * S)
    sync.sync()
    assert sync.sync() == ["ckpt-1.pt"]
    _write(ckpt_dir / "ckpt-2.pt", b"two", 2 * S)
    assert sync.sync(final=True) == ["ckpt-2.pt"]

    # Then only the first was snapshot: after the exit nothing can rewrite a file, and at an
    # interruption the copy would cost part of the two minutes
    assert copied == ["ckpt-1.pt"]
    assert s3.objects[vkey("2-000002", "ckpt-2.pt")] == b"two"
