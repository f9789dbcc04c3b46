"""Packs a project directory into a reproducible .tar.gz, named by its SHA-256."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

# Never shipped: version control, virtualenvs, caches, local-mode state.
ALWAYS_IGNORED = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    ".runctl-local",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "cdk.out",
)


@dataclass(frozen=True)
class CodePackage:
    data: bytes
    sha256: str
    files: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"code/{self.sha256}.tar.gz"


def _ignore_patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_IGNORED)
    ignore_file = root / ".runctlignore"
    if ignore_file.is_file():
        for line in ignore_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line.rstrip("/"))
    return patterns


def _ignored(relative: Path, patterns: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(part, pattern) or fnmatch.fnmatch(relative.as_posix(), pattern)
        for pattern in patterns
        for part in relative.parts
    )


def package_directory(root: Path) -> CodePackage:
    """Same files and contents -> same bytes -> same hash (sorted names, fixed metadata)."""
    root = root.resolve()
    patterns = _ignore_patterns(root)
    files = sorted(
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file()
        and not path.is_symlink()
        and not _ignored(path.relative_to(root), patterns)
    )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for relative in files:
            content = (root / relative).read_bytes()
            info = tarfile.TarInfo(relative.as_posix())
            info.size = len(content)
            info.mode = 0o755 if (root / relative).stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    data = gzip.compress(raw.getvalue(), mtime=0)
    return CodePackage(data, hashlib.sha256(data).hexdigest(), tuple(f.as_posix() for f in files))
