"""Packs a project directory into a reproducible .tar.gz, named by its SHA-256.

What is left out: ALWAYS_IGNORED, then the patterns of every `.gitignore` (each applying to its
own folder and below, as git reads them) and of `.runctlignore` at the root, with git's syntax
(`/anchored`, `dir/`, `!negation`); a deeper or later pattern wins over an earlier one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from docker.utils.build import exclude_paths
from pathspec import GitIgnoreSpec

# Never shipped: version control, virtualenvs, caches, local-mode state.
ALWAYS_IGNORED = (
    ".git/",
    ".hg/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "*.pyc",
    ".runctl-local/",
    "node_modules/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "cdk.out/",
)
GITIGNORE = ".gitignore"
RUNCTLIGNORE = ".runctlignore"


@dataclass(frozen=True)
class CodePackage:
    data: bytes
    sha256: str
    files: tuple[str, ...]
    prefix: str = "code"  # "contexts" for a Docker build context

    @property
    def key(self) -> str:
        return f"{self.prefix}/{self.sha256}.tar.gz"


@dataclass(frozen=True)
class _IgnoreRules:
    """The patterns of one ignore file, which apply to paths under `base` (relative to root)."""

    base: str  # "" for the root, else "sub/dir/"
    spec: GitIgnoreSpec

    def verdict(self, relative: str) -> bool | None:
        """True: ignore; False: re-included by a `!` pattern; None: no pattern matched."""
        if not relative.startswith(self.base):
            return None
        return self.spec.check_file(relative[len(self.base) :]).include


def _rules_from(path: Path, base: str) -> _IgnoreRules | None:
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return _IgnoreRules(base, GitIgnoreSpec.from_lines(lines))


def _is_ignored(relative: str, rules: list[_IgnoreRules]) -> bool:
    ignored = False
    for rule in rules:
        verdict = rule.verdict(relative)
        if verdict is not None:
            ignored = verdict
    return ignored


def project_files(root: Path) -> list[str]:
    """The files that ship, as sorted POSIX paths relative to `root` (symlinks never ship)."""
    root = root.resolve()
    rules = [_IgnoreRules("", GitIgnoreSpec.from_lines(ALWAYS_IGNORED))]
    for name in (GITIGNORE, RUNCTLIGNORE):
        found = _rules_from(root / name, "")
        if found is not None:
            rules.append(found)
    shipped: list[str] = []
    for folder, dirnames, filenames in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        base = "" if base == "." else base + "/"
        if base:
            nested = _rules_from(Path(folder) / GITIGNORE, base)
            if nested is not None:
                rules.append(nested)
        # Prune ignored folders so a large .venv or data folder is never walked.
        dirnames[:] = sorted(
            name
            for name in dirnames
            if not _is_ignored(f"{base}{name}/", rules) and not os.path.islink(Path(folder) / name)
        )
        shipped.extend(
            f"{base}{name}"
            for name in filenames
            if not os.path.islink(Path(folder) / name) and not _is_ignored(f"{base}{name}", rules)
        )
    return sorted(shipped)


def package_directory(root: Path) -> CodePackage:
    """Same files and contents -> same bytes -> same hash (sorted names, fixed metadata)."""
    root = root.resolve()
    return _package(root, project_files(root), "code")


DOCKERIGNORE = ".dockerignore"


def build_context_files(root: Path, dockerfile: str) -> list[str]:
    """The files of a Docker build context as `docker build` sends them: `.dockerignore` read
    with Docker's own rules (docker-py's exclude_paths: patterns anchored at the root, `**`,
    `!` exceptions; the Dockerfile and .dockerignore always go). Symlinks are left out, as
    for code."""
    ignore = root / DOCKERIGNORE
    patterns = (
        ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        if ignore.is_file()
        else []
    )
    included = exclude_paths(str(root), patterns, dockerfile=dockerfile)
    return sorted(
        path
        for path in included
        if (root / path).is_file() and not any(p.is_symlink() for p in _chain(root, path))
    )


def package_build_context(root: Path, dockerfile: str) -> CodePackage:
    """The build context under contexts/<sha256>.tar.gz: same files -> same hash -> no build."""
    root = root.resolve()
    return _package(root, build_context_files(root, dockerfile), "contexts")


def _chain(root: Path, relative: str) -> list[Path]:
    """The path and each folder between it and root."""
    path = root / relative
    return [
        path,
        *[parent for parent in path.parents if parent.is_relative_to(root) and parent != root],
    ]


def _package(root: Path, files: list[str], prefix: str) -> CodePackage:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for relative in files:
            path = root / relative
            content = path.read_bytes()
            info = tarfile.TarInfo(relative)
            info.size = len(content)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    data = gzip.compress(raw.getvalue(), mtime=0)
    return CodePackage(data, hashlib.sha256(data).hexdigest(), tuple(files), prefix)


def upload_package(s3: Any, bucket: str, package: CodePackage) -> tuple[str, int]:
    """Put the archive under its hash unless it is there: its URI, and the bytes uploaded (0 when
    the same code was uploaded before). S3 checks the body against the SHA-256, so a corrupted
    transfer is refused, not stored."""
    uri = f"s3://{bucket}/{package.key}"
    try:
        s3.head_object(Bucket=bucket, Key=package.key)
        return uri, 0
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey"}:
            raise
    s3.put_object(
        Bucket=bucket,
        Key=package.key,
        Body=package.data,
        ChecksumSHA256=base64.b64encode(bytes.fromhex(package.sha256)).decode(),
    )
    return uri, len(package.data)
