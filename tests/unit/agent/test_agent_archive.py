"""Safe extraction of the code archive: nothing outside the code dir, no devices."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from instance_agent.archive import UnsafeArchive, extract_archive
from instance_agent.errors import StagingError


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def test_given_a_plain_archive_then_files_dirs_and_modes_are_extracted(tmp_path, make_tar):
    archive = make_tar([("train.py", b"print(1)"), ("pkg/mod.py", b"x = 1"), ("./README", b"r")])
    target = tmp_path / "code"

    count = extract_archive(archive, target)

    assert count == 3
    assert (target / "train.py").read_bytes() == b"print(1)"
    assert (target / "pkg" / "mod.py").read_bytes() == b"x = 1"
    assert (target / "README").read_bytes() == b"r"


def test_executable_bits_are_kept_and_setuid_dropped(tmp_path):
    path = tmp_path / "modes.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, mode in (("run.sh", 0o755), ("suid", 0o4755)):
            info = tarfile.TarInfo(name)
            info.mode, info.size = mode, 2
            tar.addfile(info, io.BytesIO(b"ok"))
    target = tmp_path / "code"

    extract_archive(path, target)

    assert os.stat(target / "run.sh").st_mode & 0o7777 == 0o755
    assert os.stat(target / "suid").st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("name", ["../evil", "sub/../../evil", "/tmp/evil-abs", "a/../b"])
def test_given_a_member_with_dotdot_or_an_absolute_path_then_extraction_fails(
    tmp_path, make_tar, name
):
    archive = make_tar([("ok.py", b""), (name, b"pwned")])
    target = tmp_path / "code"

    with pytest.raises(UnsafeArchive):
        extract_archive(archive, target)

    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/evil-abs").exists()


@pytest.mark.parametrize(
    "link_target", ["../outside", "../../etc/passwd", "/etc/passwd", "a/../.."]
)
def test_given_a_symlink_pointing_outside_then_extraction_fails(tmp_path, make_tar, link_target):
    archive = make_tar([_link("escape", link_target)])
    target = tmp_path / "code"

    with pytest.raises(UnsafeArchive, match="escape"):
        extract_archive(archive, target)

    assert not (target / "escape").is_symlink()


def test_given_a_symlink_then_a_file_through_it_then_nothing_is_written_outside(tmp_path, make_tar):
    # The classic two-step escape: a link to a parent, then a member below the link.
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = make_tar([_link("dir", "../outside"), ("dir/evil", b"pwned")])

    with pytest.raises(UnsafeArchive):
        extract_archive(archive, tmp_path / "code")

    assert list(outside.iterdir()) == []


def test_given_links_that_become_an_escape_later_then_writing_through_them_fails(
    tmp_path, make_tar
):
    # x -> y/.. is inside while y is missing; once y -> . exists, x means the parent directory.
    archive = make_tar([_link("x", "y/.."), _link("y", "."), ("x/evil", b"pwned")])

    with pytest.raises(UnsafeArchive):
        extract_archive(archive, tmp_path / "code")

    assert not (tmp_path / "evil").exists()


def test_given_a_symlink_inside_the_archive_then_it_is_kept(tmp_path, make_tar):
    archive = make_tar([("lib/real.py", b"x"), _link("alias.py", "lib/real.py")])
    target = tmp_path / "code"

    extract_archive(archive, target)

    assert os.readlink(target / "alias.py") == "lib/real.py"
    assert (target / "alias.py").read_bytes() == b"x"


def test_given_a_hard_link_outside_the_archive_then_extraction_fails(tmp_path, make_tar):
    archive = make_tar([_link("hard", "../secret", tarfile.LNKTYPE)])

    with pytest.raises(UnsafeArchive):
        extract_archive(archive, tmp_path / "code")


def test_given_a_hard_link_to_a_member_then_it_becomes_a_copy(tmp_path, make_tar):
    archive = make_tar([("a.txt", b"data"), _link("b.txt", "a.txt", tarfile.LNKTYPE)])
    target = tmp_path / "code"

    extract_archive(archive, target)

    assert (target / "b.txt").read_bytes() == b"data"
    assert os.stat(target / "a.txt").st_ino != os.stat(target / "b.txt").st_ino


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_given_a_device_or_fifo_then_extraction_fails(tmp_path, make_tar, kind):
    archive = make_tar([_special("dev", kind)])

    with pytest.raises(UnsafeArchive, match="device"):
        extract_archive(archive, tmp_path / "code")

    assert not (tmp_path / "code" / "dev").exists()


def test_given_a_file_replacing_an_earlier_symlink_then_the_link_target_is_untouched(
    tmp_path, make_tar
):
    archive = make_tar([("real.txt", b"original"), _link("alias", "real.txt"), ("alias", b"new")])
    target = tmp_path / "code"

    extract_archive(archive, target)

    assert (target / "real.txt").read_bytes() == b"original"
    assert not (target / "alias").is_symlink()
    assert (target / "alias").read_bytes() == b"new"


def test_given_something_that_is_not_a_tar_then_a_staging_error_says_so(tmp_path):
    bogus = tmp_path / "code.tar.gz"
    bogus.write_bytes(b"not a tar at all")

    with pytest.raises(StagingError, match=r"not a readable tar\.gz"):
        extract_archive(bogus, tmp_path / "code")
