"""A local --data folder is scanned into a content-addressed manifest: what goes up, what is left
out (hidden files), which links are followed, and one-line errors for what cannot go up."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from runctl.data_folders import DataFolder, scan_data_folder
from runctl.errors import DataFolderError
from runctl.specs import LocalData


def _local(path: Path, name: str = "ds") -> LocalData:
    return LocalData(name=name, path=path, argument=f"./{path.name}")


def _write(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)


def _scan(root: Path) -> DataFolder:
    return scan_data_folder(_local(root))


def test_given_a_folder_then_every_file_is_listed_with_its_size_and_hash(tmp_path):
    # Given a folder with nested files
    root = tmp_path / "ds"
    _write(root, {"train/a.csv": b"1,2\n", "labels.txt": b"cat\n", "train/b/c.bin": b"\x00" * 5})

    folder = _scan(root)

    # Then the manifest lists each file by relative path, size and SHA-256, in path order,
    # and the prefix under data/local/ is the manifest's own hash
    assert json.loads(folder.manifest()) == {
        "version": 1,
        "files": [
            ["labels.txt", 4, hashlib.sha256(b"cat\n").hexdigest()],
            ["train/a.csv", 4, hashlib.sha256(b"1,2\n").hexdigest()],
            ["train/b/c.bin", 5, hashlib.sha256(b"\x00" * 5).hexdigest()],
        ],
    }
    assert folder.digest == hashlib.sha256(folder.manifest()).hexdigest()
    assert folder.prefix == f"data/local/{folder.digest}/"
    assert folder.manifest_key == f"data/local/{folder.digest}.json"
    assert folder.size == 13


def test_given_the_same_content_elsewhere_then_the_digest_is_the_same_and_a_change_moves_it(
    tmp_path,
):
    # Given two folders with the same files (written at different times)
    files = {"x/1.txt": b"one", "2.txt": b"two"}
    _write(tmp_path / "a", files)
    _write(tmp_path / "b", files)
    first = _scan(tmp_path / "a")

    # Then their digests agree; and a changed byte, or a renamed file, changes it
    assert _scan(tmp_path / "b").digest == first.digest
    (tmp_path / "b" / "2.txt").write_bytes(b"twO")
    assert _scan(tmp_path / "b").digest != first.digest
    (tmp_path / "a" / "2.txt").rename(tmp_path / "a" / "3.txt")
    assert _scan(tmp_path / "a").digest != first.digest


def test_given_hidden_files_and_folders_then_they_are_left_out_and_counted(tmp_path):
    root = tmp_path / "ds"
    _write(root, {"data.csv": b"x", ".DS_Store": b"junk", ".git/HEAD": b"ref", "sub/.cache": b""})

    folder = _scan(root)

    assert [item.path for item in folder.files] == ["data.csv"]
    assert folder.hidden == 3


def test_given_a_single_file_then_it_is_uploaded_under_its_own_name(tmp_path):
    _write(tmp_path, {"train.csv": b"a,b\n"})

    folder = scan_data_folder(_local(tmp_path / "train.csv", name="train.csv"))

    assert [(item.path, item.size) for item in folder.files] == [("train.csv", 4)]


def test_given_links_inside_the_folder_then_they_are_followed(tmp_path):
    # Given a link to a file and a link to a folder, both inside the data folder
    root = tmp_path / "ds"
    _write(root, {"real/a.txt": b"A"})
    (root / "alias.txt").symlink_to(root / "real" / "a.txt")
    (root / "again").symlink_to("real", target_is_directory=True)

    folder = _scan(root)

    # Then each is uploaded at the link's path with the target's content
    assert [(item.path, item.sha256) for item in folder.files] == [
        ("again/a.txt", hashlib.sha256(b"A").hexdigest()),
        ("alias.txt", hashlib.sha256(b"A").hexdigest()),
        ("real/a.txt", hashlib.sha256(b"A").hexdigest()),
    ]


def test_given_a_data_folder_that_is_itself_a_link_then_its_files_are_uploaded(tmp_path):
    _write(tmp_path / "mnt" / "big", {"x.bin": b"x"})
    (tmp_path / "ds").symlink_to(tmp_path / "mnt" / "big", target_is_directory=True)

    assert [item.path for item in _scan(tmp_path / "ds").files] == ["x.bin"]


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda root, out: (root / "leak").symlink_to(out / "secret.txt"), "links outside"),
        (
            lambda root, out: (root / "up").symlink_to(out, target_is_directory=True),
            "links outside",
        ),
        (lambda root, out: (root / "gone").symlink_to(root / "missing"), "a link to nothing"),
        (
            lambda root, out: (root / "sub" / "loop").symlink_to(root, target_is_directory=True),
            "a loop",
        ),
    ],
)
def test_given_a_link_out_of_the_folder_or_nowhere_then_it_is_refused_naming_it(
    tmp_path, arrange, message
):
    # Given a data folder with one good file and one bad link
    root, out = tmp_path / "ds", tmp_path / "outside"
    _write(root, {"sub/ok.txt": b"ok"})
    _write(out, {"secret.txt": b"secret"})
    arrange(root, out)

    # Then scanning refuses it, in one line naming the flag and the link
    with pytest.raises(DataFolderError, match=message) as raised:
        _scan(root)
    assert str(raised.value).startswith("--data './ds': ")
    assert "\n" not in str(raised.value)


def test_given_an_empty_folder_then_the_error_says_so_in_one_line(tmp_path):
    (tmp_path / "ds" / "empty-sub").mkdir(parents=True)

    with pytest.raises(DataFolderError, match=r"^--data './ds': .*ds holds no files to upload;"):
        _scan(tmp_path / "ds")


def test_given_only_hidden_files_then_the_error_says_they_were_left_out(tmp_path):
    _write(tmp_path / "ds", {".only": b"x"})

    with pytest.raises(DataFolderError, match=r"no files to upload \(1 hidden left out\)"):
        _scan(tmp_path / "ds")


def test_given_a_missing_path_then_the_error_names_the_flag(tmp_path):
    with pytest.raises(DataFolderError, match=r"^--data './ds': no such file or folder"):
        _scan(tmp_path / "ds")


def test_given_a_pipe_in_the_folder_then_it_is_refused(tmp_path):
    _write(tmp_path / "ds", {"ok.txt": b"ok"})
    os.mkfifo(tmp_path / "ds" / "pipe")

    with pytest.raises(DataFolderError, match="pipe is not a regular file or folder"):
        _scan(tmp_path / "ds")
