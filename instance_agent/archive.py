"""Safe extraction of the code archive: nothing may land outside the target directory.

tarfile's own `filter="data"` is missing from some Python 3.9 builds, so members are checked and
written here: absolute names, `..`, links leading outside, devices and FIFOs are refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath

from .errors import StagingError


class UnsafeArchive(StagingError):
    """The archive holds a member that would escape the target or is not a plain file."""


def extract_archive(archive: Path, target: Path) -> int:
    """Extract a .tar(.gz) into target; return the number of members written."""
    target.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(target))
    count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if _extract_member(tar, member, root):
                    count += 1
    except tarfile.TarError as error:
        raise StagingError(f"the code archive is not a readable tar.gz: {error}") from error
    return count


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> bool:
    relative = _safe_relative(member.name, member.name)
    if relative is None:
        return False  # the archive's own root entry, "./"
    destination = root / relative
    if not _inside(root, destination.parent):
        raise UnsafeArchive(f"archive member {member.name!r} would be written outside the code dir")
    if member.isdir():
        _make_dir(root, destination, member.name)
        return True
    if not (member.isreg() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"archive member {member.name!r} is a device, FIFO or unknown type")
    destination.parent.mkdir(parents=True, exist_ok=True)
    _clear(destination, member.name)
    if member.isreg():
        _write_file(tar, member, destination)
    elif member.issym():
        _write_symlink(member, destination, root)
    else:
        _write_hardlink(member, destination, root)
    return True


def _safe_relative(name: str, member: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise UnsafeArchive(f"archive member {member!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchive(f"archive member {member!r} contains '..'")
    if not path.parts or path == PurePosixPath("."):
        return None
    return path


def _inside(root: Path, path: Path) -> bool:
    # realpath follows links already extracted, so a link cannot be used as a way out.
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _make_dir(root: Path, destination: Path, name: str) -> None:
    if destination.is_symlink():
        raise UnsafeArchive(f"archive member {name!r} replaces a link with a directory")
    destination.mkdir(parents=True, exist_ok=True)
    if not _inside(root, destination):
        raise UnsafeArchive(f"archive member {name!r} would be written outside the code dir")


def _clear(destination: Path, name: str) -> None:
    # A later member with the same name replaces the earlier one; writing through an existing
    # link would instead write wherever it points.
    if destination.is_symlink() or destination.is_file():
        destination.unlink()
    elif destination.exists():
        raise UnsafeArchive(f"archive member {name!r} replaces a directory")


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise UnsafeArchive(f"archive member {member.name!r} has no data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    # Keep the owner's permission bits (scripts stay executable), never set-id bits.
    mode = (member.mode & 0o777) | stat.S_IRUSR | stat.S_IWUSR
    with source, os.fdopen(os.open(destination, flags, mode), "wb") as target:
        shutil.copyfileobj(source, target)
    os.chmod(destination, mode)


def _write_symlink(member: tarfile.TarInfo, destination: Path, root: Path) -> None:
    link = member.linkname
    if os.path.isabs(link):
        raise UnsafeArchive(f"archive link {member.name!r} points at an absolute path {link!r}")
    resolved = os.path.join(os.path.realpath(destination.parent), link)
    if not _inside(root, Path(resolved)):
        raise UnsafeArchive(f"archive link {member.name!r} -> {link!r} points outside the code dir")
    os.symlink(link, destination)


def _write_hardlink(member: tarfile.TarInfo, destination: Path, root: Path) -> None:
    # A hard link names another member of the archive; copy it rather than link to it, so the
    # result never shares an inode with a file that was not in the archive.
    relative = _safe_relative(member.linkname, member.name)
    source = root / relative if relative is not None else root
    if not _inside(root, source) or not source.is_file():
        raise UnsafeArchive(
            f"archive hard link {member.name!r} -> {member.linkname!r} is not a file in the archive"
        )
    shutil.copyfile(source, destination)
    os.chmod(destination, (member.mode & 0o777) | stat.S_IRUSR | stat.S_IWUSR)
