"""Code packages are reproducible and content-addressed, and leave out what must not ship."""

from __future__ import annotations

import io
import tarfile

from runctl.packaging import package_directory


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def test_same_files_give_the_same_bytes_and_hash(tmp_path):
    # Given a project packaged twice, with a file touched (mtime changed) in between
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "model.py").write_text("W = 1\n")
    first = package_directory(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")

    # Then the archive and its hash are identical, and its key is the hash
    second = package_directory(tmp_path)
    assert first.data == second.data
    assert first.sha256 == second.sha256
    assert first.key == f"code/{first.sha256}.tar.gz"


def test_changed_content_changes_the_hash(tmp_path):
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    before = package_directory(tmp_path)
    (tmp_path / "train.py").write_text("lr = 0.2\n")
    assert package_directory(tmp_path).sha256 != before.sha256


def test_vcs_venv_caches_and_runctlignore_patterns_are_left_out(tmp_path):
    # Given a project with things that must not ship
    for path in [".git/HEAD", ".venv/bin/python", "pkg/__pycache__/m.pyc", "data/big.bin"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    (tmp_path / "train.py").write_text("x")
    (tmp_path / ".runctlignore").write_text("# large inputs come from S3\ndata/\n")

    # Then only the code (and the ignore file itself) is packaged
    package = package_directory(tmp_path)
    assert sorted(_names(package.data)) == [".runctlignore", "train.py"]
    assert package.files == (".runctlignore", "train.py")


def _write(root, *paths):
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")


def test_gitignore_patterns_are_respected_with_git_syntax(tmp_path):
    # Given a project whose .gitignore anchors, negates and names folders
    _write(
        tmp_path,
        "train.py",
        "run.log",
        "keep.log",
        "build/lib.py",
        "notes/todo.txt",
        "src/todo.txt",
        "src/model.py",
    )
    (tmp_path / ".gitignore").write_text("*.log\n!keep.log\nbuild/\n/notes\n")

    # Then what git would leave out is left out, and only that
    assert package_directory(tmp_path).files == (
        ".gitignore",
        "keep.log",
        "src/model.py",
        "src/todo.txt",
        "train.py",
    )


def test_a_nested_gitignore_applies_to_its_own_folder_only(tmp_path):
    _write(tmp_path, "data.csv", "sub/data.csv", "sub/code.py", "other/data.csv")
    (tmp_path / "sub" / ".gitignore").write_text("*.csv\n")

    assert package_directory(tmp_path).files == (
        "data.csv",
        "other/data.csv",
        "sub/.gitignore",
        "sub/code.py",
    )


def test_runctlignore_can_re_include_what_gitignore_leaves_out(tmp_path):
    # Given weights git ignores but the run needs
    _write(tmp_path, "train.py", "weights/init.bin", "weights/other.bin")
    (tmp_path / ".gitignore").write_text("*.bin\n")
    (tmp_path / ".runctlignore").write_text("!weights/init.bin\n")

    assert "weights/init.bin" in package_directory(tmp_path).files
    assert "weights/other.bin" not in package_directory(tmp_path).files


def test_symlinks_never_ship(tmp_path):
    _write(tmp_path, "train.py")
    (tmp_path / "link.py").symlink_to(tmp_path / "train.py")
    (tmp_path / "linked_dir").symlink_to(tmp_path, target_is_directory=True)

    assert package_directory(tmp_path).files == ("train.py",)
