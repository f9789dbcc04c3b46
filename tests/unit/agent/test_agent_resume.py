"""Resume: the newest usable version latest.json lists is downloaded whole, checked, and only then
put in place for the script; a torn or missing one falls back to the version before it."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from instance_agent.checkpoints import CheckpointSync
from instance_agent.resume import ResumeError, Resumption, restore_latest_checkpoint

RUN = "run-1"
PREFIX = f"runs/{RUN}/checkpoints/"
MANIFEST = f"{PREFIX}latest.json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vkey(version: str, relative: str) -> str:
    return f"{PREFIX}v/{version}/{relative}"


class ObjectStore:
    """The S3 calls resume and checkpoint sync make, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.denied: set[str] = set()

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "x"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def download_file(self, bucket: str, key: str, filename: str, **kwargs: Any) -> None:
        if key in self.denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "x"}}, "GetObject")
        if key not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "x"}}, "HeadObject")
        Path(filename).write_bytes(self.objects[key])

    def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        self.objects[key] = Path(filename).read_bytes()

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> None:
        self.objects[Key] = Body

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        for item in Delete["Objects"]:
            self.objects.pop(item["Key"], None)
        return {}

    def put_version(
        self, version: str, name: str, files: dict[str, bytes], saved_at: str = "", **fields: Any
    ) -> dict[str, Any]:
        """Store a version's objects; return its manifest entry (not yet in latest.json)."""
        for relative, data in files.items():
            self.objects[vkey(version, relative)] = data
        return {
            "version": version,
            "name": name,
            "kind": "file" if list(files) == [name] else "folder",
            "step": None,
            "attempt": int(version.split("-")[0]),
            "saved_at": saved_at or "2026-11-23T10:00:00+00:00",
            "uploaded_at": "2026-11-23T10:00:01+00:00",
            "files": [
                {"path": relative, "sha256": sha(data), "size": len(data)}
                for relative, data in files.items()
            ],
            **fields,
        }

    def put_manifest(self, *entries: dict[str, Any], **body: Any) -> None:
        manifest = {"format": 2, "checkpoints": list(entries), **body}
        self.objects[MANIFEST] = json.dumps(manifest).encode()

    def put_format_1(self, relative: str, data: bytes, **fields: Any) -> dict[str, Any]:
        self.objects[PREFIX + relative] = data
        body = {
            "key": PREFIX + relative,
            "path": relative,
            "step": 40,
            "sha256": sha(data),
            "size": len(data),
            "uploaded_at": "2026-11-23T10:00:00+00:00",
            "attempt": 1,
            **fields,
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


def _tree(directory: Path) -> dict[str, bytes]:
    """Every file under directory, hidden ones included, by relative path."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _assert_no_staging(directory: Path) -> None:
    assert [path.name for path in directory.rglob(".*")] == []


HF = {
    "checkpoint-50/model.safetensors": b"model-50",
    "checkpoint-50/trainer_state.json": b'{"global_step": 50}',
}


def test_given_no_latest_json_then_there_is_nothing_to_resume(store, directory):
    assert restore_latest_checkpoint(store, "b", RUN, directory) == Resumption()
    assert list(directory.iterdir()) == []


def test_given_a_folder_version_then_it_lands_whole_at_its_name_verified(store, directory):
    store.put_manifest(store.put_version("3-000017", "checkpoint-50", HF, step=50))

    resumption = restore_latest_checkpoint(store, "b", RUN, directory)

    assert resumption.local_path == (directory / "checkpoint-50").resolve()
    assert resumption.local_path.is_absolute() and resumption.local_path.is_dir()
    assert _tree(directory) == HF
    assert resumption.restored is not None
    assert (resumption.restored.version, resumption.restored.kind) == ("3-000017", "folder")
    assert resumption.restored.step == 50
    assert [version.version for version in resumption.listed] == ["3-000017"]
    assert resumption.skipped == []
    _assert_no_staging(directory)


def test_given_a_file_version_then_it_lands_at_its_name(store, directory):
    store.put_manifest(store.put_version("2-000003", "last.ckpt", {"last.ckpt": b"weights"}))

    resumption = restore_latest_checkpoint(store, "b", RUN, directory)

    assert resumption.local_path == (directory / "last.ckpt").resolve()
    assert _tree(directory) == {"last.ckpt": b"weights"}
    assert resumption.restored is not None and resumption.restored.kind == "file"
    _assert_no_staging(directory)


def test_given_a_folder_already_there_then_the_restored_one_replaces_it_whole(store, directory):
    (directory / "checkpoint-50").mkdir()
    (directory / "checkpoint-50" / "stale.bin").write_bytes(b"stale")
    store.put_manifest(store.put_version("3-000017", "checkpoint-50", HF))

    restore_latest_checkpoint(store, "b", RUN, directory)

    assert _tree(directory) == HF


def test_given_a_torn_newest_version_then_the_one_before_it_is_restored(store, directory):
    newer = store.put_version("2-000002", "ckpt-000020.pt", {"ckpt-000020.pt": b"weights-20"})
    older = store.put_version("2-000001", "ckpt-000010.pt", {"ckpt-000010.pt": b"weights-10"})
    store.objects[vkey("2-000002", "ckpt-000020.pt")] = b"weights-2"  # cut short
    store.put_manifest(newer, older)

    resumption = restore_latest_checkpoint(store, "b", RUN, directory)

    assert resumption.restored is not None and resumption.restored.version == "2-000001"
    assert resumption.local_path == (directory / "ckpt-000010.pt").resolve()
    assert _tree(directory) == {"ckpt-000010.pt": b"weights-10"}
    assert [version.version for version in resumption.listed] == ["2-000001"]
    (why,) = resumption.skipped
    assert why.startswith("ckpt-000020.pt (version 2-000002): ")
    assert f"has sha256 {sha(b'weights-2')}" in why
    assert f"latest.json says {sha(b'weights-20')}" in why
    assert "a torn or altered file" in why
    _assert_no_staging(directory)


def test_given_a_newest_version_with_an_object_missing_then_the_one_before_it_is_restored(
    store, directory
):
    newer = store.put_version(
        "3-000002",
        "checkpoint-60",
        {
            "checkpoint-60/model.safetensors": b"model-60",
            "checkpoint-60/trainer_state.json": b'{"global_step": 60}',
        },
    )
    older = store.put_version("3-000001", "checkpoint-50", HF)
    del store.objects[vkey("3-000002", "checkpoint-60/trainer_state.json")]
    store.put_manifest(newer, older)

    resumption = restore_latest_checkpoint(store, "b", RUN, directory)

    assert resumption.restored is not None and resumption.restored.name == "checkpoint-50"
    assert _tree(directory) == HF  # nothing of the incomplete newer one
    missing = f"s3://b/{vkey('3-000002', 'checkpoint-60/trainer_state.json')} does not exist"
    assert resumption.skipped == [f"checkpoint-60 (version 3-000002): {missing}"]
    assert [version.version for version in resumption.listed] == ["3-000001"]
    _assert_no_staging(directory)


def test_given_no_usable_version_then_resuming_fails_naming_each(store, directory):
    newer = store.put_version("2-000002", "ckpt-000020.pt", {"ckpt-000020.pt": b"weights-20"})
    older = store.put_version("2-000001", "checkpoint-10", {"checkpoint-10/model.bin": b"10"})
    store.objects[vkey("2-000002", "ckpt-000020.pt")] = b"altered"
    del store.objects[vkey("2-000001", "checkpoint-10/model.bin")]
    store.put_manifest(newer, older)

    with pytest.raises(ResumeError) as raised:
        restore_latest_checkpoint(store, "b", RUN, directory)

    message = str(raised.value)
    assert message.startswith(f"no checkpoint s3://b/{MANIFEST} lists can be restored intact: ")
    assert "ckpt-000020.pt (version 2-000002): " in message and "torn or altered" in message
    assert "checkpoint-10 (version 2-000001): " in message and "does not exist" in message
    assert list(directory.iterdir()) == []


def test_given_an_s3_error_other_than_missing_then_resuming_fails_without_falling_back(
    store, directory
):
    newer = store.put_version("2-000002", "ckpt-000020.pt", {"ckpt-000020.pt": b"20"})
    older = store.put_version("2-000001", "ckpt-000010.pt", {"ckpt-000010.pt": b"10"})
    store.denied.add(vkey("2-000002", "ckpt-000020.pt"))
    store.put_manifest(newer, older)

    with pytest.raises(ResumeError, match=r"cannot download checkpoint .*AccessDenied"):
        restore_latest_checkpoint(store, "b", RUN, directory)

    assert list(directory.iterdir()) == []


def test_given_a_format_1_manifest_then_the_file_is_restored_from_its_legacy_key(store, directory):
    store.put_format_1("ckpt-000040.pt", b"weights-40")

    resumption = restore_latest_checkpoint(store, "b", RUN, directory)

    assert resumption.local_path == (directory / "ckpt-000040.pt").resolve()
    assert _tree(directory) == {"ckpt-000040.pt": b"weights-40"}
    restored = resumption.restored
    assert restored is not None
    assert (restored.name, restored.kind, restored.step, restored.attempt) == (
        "ckpt-000040.pt",
        "file",
        40,
        1,
    )
    assert restored.key(RUN, "ckpt-000040.pt") == PREFIX + "ckpt-000040.pt"
    _assert_no_staging(directory)


def test_given_a_torn_format_1_checkpoint_then_resuming_fails(store, directory):
    store.put_format_1("ckpt-000040.pt", b"weights-40")
    store.objects[PREFIX + "ckpt-000040.pt"] = b"weights-4"

    with pytest.raises(ResumeError, match="a torn or altered file"):
        restore_latest_checkpoint(store, "b", RUN, directory)

    assert list(directory.iterdir()) == []


def test_given_a_format_1_manifest_naming_a_nested_file_then_the_script_is_handed_that_file(
    store, directory
):
    store.put_format_1("epoch-4/ckpt-000040.pt", b"weights-40")

    resumption = restore_latest_checkpoint(store, "b", RUN, directory)

    assert _tree(directory) == {"epoch-4/ckpt-000040.pt": b"weights-40"}
    assert resumption.local_path == (directory / "epoch-4" / "ckpt-000040.pt").resolve()


def test_a_format_1_checkpoint_carried_into_a_format_2_manifest_can_still_be_restored(
    store, tmp_path
):
    first, second = tmp_path / "attempt-2", tmp_path / "attempt-3"
    first.mkdir()
    second.mkdir()
    store.put_format_1("ckpt-000040.pt", b"weights-40")
    resumed = restore_latest_checkpoint(store, "b", RUN, first)
    assert resumed.restored is not None
    sync = CheckpointSync(store, "b", RUN, 2, first, tmp_path / "snapshots", tracker=None)
    sync.adopt(resumed.listed)
    sync.mark_present(resumed.restored)
    (first / "ckpt-000050.pt").write_bytes(b"weights-50")
    assert sync.sync(final=True) == ["ckpt-000050.pt"]
    manifest = json.loads(store.objects[MANIFEST])
    assert [entry["name"] for entry in manifest["checkpoints"]] == [
        "ckpt-000050.pt",
        "ckpt-000040.pt",
    ]
    store.objects[vkey("2-000001", "ckpt-000050.pt")] = b"torn"  # the newest is unusable

    resumption = restore_latest_checkpoint(store, "b", RUN, second)

    assert _tree(second) == {"ckpt-000040.pt": b"weights-40"}
    assert resumption.restored is not None and resumption.restored.name == "ckpt-000040.pt"


GOOD_FILES = [{"path": "checkpoint-50/model.bin", "sha256": "a" * 64, "size": 3}]


def _entry(**fields: Any) -> dict[str, Any]:
    entry = {
        "version": "2-000001",
        "name": "checkpoint-50",
        "kind": "folder",
        "step": 50,
        "attempt": 2,
        "saved_at": "2026-11-23T10:00:00+00:00",
        "uploaded_at": "2026-11-23T10:00:01+00:00",
        "files": GOOD_FILES,
        **fields,
    }
    return entry


def _files(path: str) -> list[dict[str, Any]]:
    return [{"path": path, "sha256": "a" * 64, "size": 3}]


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (
            {"format": 2, "checkpoints": [_entry(files=_files("checkpoint-50/../../x"))]},
            "cannot hold",
        ),
        ({"format": 2, "checkpoints": [_entry(name="..", files=_files("../x"))]}, "cannot use"),
        ({"format": 2, "checkpoints": [_entry(files=_files("/etc/passwd"))]}, "cannot hold"),
        ({"format": 2, "checkpoints": [_entry(name="/etc", files=_files("/etc/x"))]}, "cannot use"),
        (
            {"format": 2, "checkpoints": [_entry(files=_files("checkpoint-60/model.bin"))]},
            "cannot hold",
        ),
        ({"format": 2, "checkpoints": [_entry(kind="file")]}, "cannot hold"),
        ({"format": 2, "checkpoints": [_entry(kind="blob")]}, "unknown kind"),
        ({"format": 2, "checkpoints": [_entry(version="../1")]}, "bad version"),
        ({"format": 2, "checkpoints": [_entry(files=[])]}, "lists no files"),
        (
            {"format": 2, "checkpoints": [_entry(files=[{**GOOD_FILES[0], "sha256": "abc"}])]},
            "no valid sha256",
        ),
        ({"format": 2, "checkpoints": "all"}, "has no checkpoints list"),
        ({"format": 3, "checkpoints": []}, "unknown format: 3"),
        ({"checkpoints": [_entry()]}, "unknown format: None"),
        (["not", "an", "object"], "is not a JSON object"),
        (
            {"key": PREFIX + "../../escape.pt", "path": "../../escape.pt", "sha256": "a" * 64},
            "cannot use",
        ),
        ({"key": PREFIX + "/etc/passwd", "path": "/etc/passwd", "sha256": "a" * 64}, "cannot use"),
        (
            {"key": "runs/other-run/checkpoints/c.pt", "path": "c.pt", "sha256": "a" * 64},
            "does not match",
        ),
        ({"key": PREFIX + "c.pt", "path": "c.pt", "sha256": "abc"}, "no valid sha256"),
    ],
)
def test_given_an_unusable_manifest_then_resuming_fails_with_the_reason(
    store, directory, manifest, problem
):
    store.objects[MANIFEST] = json.dumps(manifest).encode()
    store.objects[vkey("2-000001", "checkpoint-50/model.bin")] = b"abc"

    with pytest.raises(ResumeError, match=problem) as raised:
        restore_latest_checkpoint(store, "b", RUN, directory)

    assert str(raised.value).startswith(f"s3://b/{MANIFEST} ")
    assert list(directory.iterdir()) == []


def test_given_latest_json_that_is_not_json_then_resuming_fails(store, directory):
    store.objects[MANIFEST] = b"{torn"

    with pytest.raises(ResumeError, match="is not JSON"):
        restore_latest_checkpoint(store, "b", RUN, directory)
