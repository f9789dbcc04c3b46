"""The script's Python environment: a virtualenv over the image's Python, built from the code's
requirements.txt and cached in S3.

The script runs with the image's Python (AL2023's python3 with no packages, the Deep Learning AMI's
/opt/pytorch/bin/python with CUDA torch). When the code archive has a requirements.txt at its
root, a virtualenv layered over that Python (`--system-site-packages`) is prepared before the
script starts, in `envs_root/<cache key>/`:

- already there and complete on this instance (its marker file, written last, names the key):
  used as it is;
- else cached in S3 (`envs/<key>.tar.gz`): downloaded, extracted next to its place and renamed
  into it; a corrupt or partial archive is logged and the environment is built instead;
- else built, then archived and uploaded for the next attempt (a failed upload is only logged).

The cache key covers a format version, the requirements (with the files they include by `-r` /
`-c`, and the code's files when they name local paths such as `./wheels/x.whl`), the image, the
AMI the instance booted (IMDS `ami-id`; left out when IMDS does not say), the architecture, the
image Python's exact `sys.version` and the installer. An editable install of a local path
(`-e .`) points into this attempt's code directory, so that environment is never cached in S3.

The installer: uv over a plain image, pip over an image that ships packages to reuse
(`ImagePython.layered`, the DLAMI's torch). uv does not see the packages of the base
interpreter's site-packages when it resolves (astral-sh/uv#7358, astral-sh/uv#2500), so over the
DLAMI it would download CUDA torch again; pip resolves against sys.path and installs only what is
missing.

When the image Python is itself a virtualenv (/opt/pytorch may be; local mode's stand-ins are),
`--system-site-packages` would expose its *base* interpreter's site-packages, not the image
venv's own. So the new environment is made without it, and a .pth file adds exactly what the
image Python sees (site.getsitepackages(), with site.addsitedir so its own .pth files count too),
which makes its packages importable and visible to pip's resolver.

Relocation: on AWS `envs_root` is the same on every instance (/opt/runctl/envs), so an environment
restored from S3 lands at the path it was built at and is exact. Elsewhere the interpreter and
its packages still work (a venv finds its site-packages from its own pyvenv.cfg; uv's environments
are `--relocatable`), but the console scripts of a pip-built environment keep shebangs naming the
path it was built at. The script itself is run as `<env>/bin/python script.py`.

The cache bucket is trusted like the code archive (both run code on the instance); extraction
still writes nothing outside the environment's directory, and the only links leading out of it
are the environment's `bin/python*` links to the image's interpreter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .archive import _extract_member
from .errors import AgentError, StagingError
from .files import sha256_of, walk_files
from .layout import env_archive_key, s3_uri
from .s3io import CHECKSUM, download_file, is_missing

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DEPENDENCY_FILE = "requirements.txt"
# Part of every cache key: bump it when what an environment holds or how it is archived changes.
FORMAT_VERSION = "1"
COMPLETE_MARKER = ".runctl-env-complete"
IMAGE_PACKAGES_PTH = "_runctl_image_packages.pth"

NONE = "none"
INSTALLED = "installed"
RESTORED = "restored"
UV = "uv"
PIP = "pip"

_POLL_SECONDS = 0.2  # how often should_stop() is asked while an installer runs
# Asking a Python about itself takes well under a second; the bound keeps a set-up that may be
# interrupted (two minutes' notice) from hanging on a broken interpreter.
_PROBE_TIMEOUT = 20.0
_MESSAGE_LIMIT = 500
# gzip level 1: an environment of several GB is archived in a fraction of the time level 9
# takes, and compiled extensions shrink little more at higher levels.
_COMPRESS_LEVEL = 1
_INTERPRETER_LINK = re.compile(r"bin/python[0-9.]*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_UV_DETAIL_PREFIXES = ("cause:", "Caused by:", "╰─▶")
_INCLUDE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_EDITABLE_OPTIONS = ("-e", "--editable")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2")

# Asked of the image Python: its exact version, whether it is a venv and, if so, its own
# site-packages (Python 3.9 compatible).
_PROBE = (
    "import json, os, site, sys\n"
    "venv = sys.prefix != getattr(sys, 'base_prefix', sys.prefix)\n"
    "dirs = [d for d in site.getsitepackages() if os.path.isdir(d)] if venv else []\n"
    "print(json.dumps({'version': sys.version, 'venv': venv, 'site_packages': dirs}))\n"
)
_ENV_PATHS = (
    "import json, sys, sysconfig\n"
    "print(json.dumps({'purelib': sysconfig.get_paths()['purelib'], 'path': sys.path}))\n"
)


class EnvironmentFailed(AgentError):
    """The script's environment could not be prepared; the message is one line, the installer's
    own error line first (e.g. "pip: ERROR: No matching distribution found for x==1.0")."""


class EnvironmentInterrupted(AgentError):
    """should_stop() said so while the environment was being prepared: the installer was killed
    (or the download or upload abandoned) so that the attempt can hand off at once."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class ImagePython:
    image: str  # "al2023" | "dlami-pytorch" | "ami-..." (part of the cache key)
    interpreter: str  # a name on PATH ("python3") or an absolute path
    architecture: str  # "x86_64" | "arm64" (part of the cache key)
    layered: bool  # the image ships packages to reuse (DLAMI: torch): pip installs over them
    # The AMI the instance booted (IMDS ami-id; part of the cache key when known): two AMIs of
    # one image name can ship the same Python over different system libraries.
    ami_id: str | None = None


@dataclass
class PreparedEnvironment:
    python: str  # the interpreter to run the script with
    action: str  # NONE | INSTALLED | RESTORED
    seconds: float  # how long the install or the restore took (0 for none)
    installer: str | None  # UV | PIP | None
    cache_key: str | None

    def to_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["seconds"] = round(self.seconds, 3)
        return fields


@dataclass(frozen=True)
class _ImageFacts:
    version: str  # sys.version
    venv: bool
    site_packages: list[str]  # the image venv's own, when it is one


@dataclass(frozen=True)
class Dependencies:
    key_input: bytes  # what the cache key covers of the requirements
    cacheable: bool  # False when an editable local install ties the env to this code dir


def prepare_environment(
    code_dir: Path,
    image: ImagePython,
    s3: Any,
    bucket: str,
    envs_root: Path,
    scratch: Path,
    log_path: Path,
    uv: str | Callable[[], str | None] | None,
    should_stop: Callable[[], bool] = _never,
) -> PreparedEnvironment:
    """The interpreter the script runs with, its environment ready. `uv` is the uv executable,
    or a function that finds (or fetches) it, asked only when an environment is built with uv
    (None: looked up on PATH); the installers' output is appended to log_path.
    EnvironmentFailed when it cannot be built, EnvironmentInterrupted when should_stop() turned
    True."""
    interpreter = _resolve_interpreter(image.interpreter)
    requirements = code_dir / DEPENDENCY_FILE
    if not requirements.is_file():
        return PreparedEnvironment(interpreter, NONE, 0.0, None, None)
    # The key names the installer the image calls for, so a restore never needs uv itself.
    installer = PIP if image.layered else UV
    facts = _probe_image(interpreter)
    dependencies = read_dependencies(code_dir)
    key = cache_key(dependencies.key_input, image, facts.version, installer)
    env_dir = envs_root / key
    python = str(env_dir / "bin" / "python")
    started = time.monotonic()
    if _is_complete(env_dir, key):
        logger.info("script environment %s is already on this instance", key)
        return PreparedEnvironment(python, RESTORED, time.monotonic() - started, installer, key)
    if dependencies.cacheable and _restore(s3, bucket, key, env_dir, scratch, should_stop):
        seconds = time.monotonic() - started
        logger.info("script environment %s restored from S3 in %.1f s", key, seconds)
        return PreparedEnvironment(python, RESTORED, seconds, installer, key)
    _check_stop(should_stop, "before the environment was built")
    uv_path = _uv_executable(uv) if installer == UV else None
    if installer == UV and uv_path is None:
        logger.warning("no uv here: building the environment with pip instead")
    built_with = UV if uv_path else PIP
    command = uv_path or interpreter
    _build(built_with, command, interpreter, facts, code_dir, env_dir, key, log_path, should_stop)
    seconds = time.monotonic() - started
    logger.info("script environment %s installed with %s in %.1f s", key, built_with, seconds)
    if dependencies.cacheable:
        _upload(s3, bucket, key, env_dir, scratch, should_stop)
    else:
        logger.info("requirements install local code in editable mode: environment not cached")
    return PreparedEnvironment(python, INSTALLED, seconds, built_with, key)


def _uv_executable(uv: str | Callable[[], str | None] | None) -> str | None:
    if callable(uv):
        return uv()
    return uv or shutil.which(UV)


def cache_key(dependencies: bytes, image: ImagePython, python_version: str, installer: str) -> str:
    """sha256 over the format version, the requirements, the image, its AMI id (when known), its
    architecture, the image Python's sys.version and the installer; `dependencies` is
    requirements.txt's bytes when it names no other file (see read_dependencies)."""
    header = [FORMAT_VERSION, image.image, image.architecture, python_version, installer]
    if image.ami_id:  # unknown (IMDS did not say): the key of an image name, as before
        header.append(image.ami_id)
    digest = hashlib.sha256(json.dumps(header).encode())
    digest.update(b"\0")
    digest.update(dependencies)
    return digest.hexdigest()


# --- the image's interpreter ---


def _resolve_interpreter(interpreter: str) -> str:
    found = shutil.which(interpreter)
    if found is None:
        where = "" if os.sep in interpreter else " on PATH"
        raise EnvironmentFailed(f"the image's Python {interpreter!r} was not found{where}")
    return os.path.abspath(found)


def _probe_image(interpreter: str) -> _ImageFacts:
    def read(answer: Any) -> _ImageFacts:
        return _ImageFacts(
            version=str(answer["version"]),
            venv=bool(answer["venv"]),
            site_packages=[str(path) for path in answer["site_packages"]],
        )

    return _ask_python(interpreter, _PROBE, f"the image's Python {interpreter}", read)


def _ask_python(python: str, code: str, who: str, read: Callable[[Any], _T]) -> _T:
    """Run `python -c code` (time bounded) and return read() of the last line it prints, parsed
    as JSON; EnvironmentFailed ("<who> does not run: ...") when it does not run, fails, or
    prints no such answer."""
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise ValueError(_last_line(done.stderr + done.stdout) or f"exit {done.returncode}")
        return read(json.loads(lines[-1]))
    except (ValueError, KeyError, TypeError, OSError, subprocess.SubprocessError) as error:
        raise EnvironmentFailed(f"{who} does not run: {_cut(str(error))}") from error


# --- what the cache key covers of the requirements ---


def read_dependencies(code_dir: Path) -> Dependencies:
    """requirements.txt's bytes, then those of each file it includes (-r, -c, nested); a digest
    of the code's files when a requirement names a local path; this code dir's path, and no S3
    caching, when one is installed in editable mode."""
    parts: list[bytes] = []
    seen: set[Path] = set()
    local = editable = False

    def read(path: Path, name: str) -> None:
        nonlocal local, editable
        real = path.resolve()
        if real in seen:
            return
        seen.add(real)
        try:
            data = path.read_bytes()
        except OSError:
            parts.append(f"\0missing {name}\0".encode())  # the installer says what is wrong
            return
        parts.append(data if not parts else f"\0{name}\0".encode() + data)
        for option, value in _requirement_values(data.decode("utf-8", "replace")):
            if option in _INCLUDE_OPTIONS and "://" not in value:
                read(path.parent / value, f"{name} -> {value}")
            elif option in _EDITABLE_OPTIONS and _is_local(value, editable=True):
                editable = local = True
            elif _is_local(value):
                local = True

    read(code_dir / DEPENDENCY_FILE, DEPENDENCY_FILE)
    if local:
        parts.append(b"\0code\0" + _tree_digest(code_dir).encode())
    if editable:
        parts.append(b"\0at\0" + str(code_dir.resolve()).encode())
    return Dependencies(b"".join(parts), cacheable=not editable)


def _requirement_values(text: str) -> list[tuple[str, str]]:
    """(option, value) pairs of a requirements file: ("", token) for a token that is no
    option's value; comments dropped, continuation lines joined."""
    values: list[tuple[str, str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        tokens = re.sub(r"(^|\s)#.*", "", line).split()
        option = ""
        for token in tokens:
            if option:
                values.append((option, token))
                option = ""
            elif token.startswith("--") and "=" in token:
                name, value = token.split("=", 1)
                values.append((name, value))
            elif token in _INCLUDE_OPTIONS or token in _EDITABLE_OPTIONS:
                option = token
            elif token[:2] in _INCLUDE_OPTIONS or token[:2] in _EDITABLE_OPTIONS:
                values.append((token[:2], token[2:]))  # -rother.txt
            elif token.startswith("-"):
                option = ""  # a flag, or an option whose value is judged on its own
            else:
                values.append(("", token))
    return values


def _is_local(value: str, editable: bool = False) -> bool:
    if value.startswith("file:"):
        return True
    if "://" in value or value.startswith(("git+", "hg+", "svn+", "bzr+")):
        return False
    if editable:
        return True
    return (
        value in (".", "..")
        or value.startswith(("./", "../", "/", "~"))
        or "/" in value
        or value.endswith(_ARCHIVE_SUFFIXES)
    )


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for relative in walk_files(root):
        digest.update(f"{relative}\0{sha256_of(root / relative)}\0".encode())
    return digest.hexdigest()


# --- a complete environment, on this instance or in S3 ---


def _is_complete(env_dir: Path, key: str) -> bool:
    try:
        marker = json.loads((env_dir / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("key") == key


def _write_marker(env_dir: Path, key: str, installer: str, python_version: str) -> None:
    marker = {
        "key": key,
        "format": FORMAT_VERSION,
        "installer": installer,
        "python": python_version,
    }
    (env_dir / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")


def _restore(
    s3: Any, bucket: str, key: str, env_dir: Path, scratch: Path, should_stop: Callable[[], bool]
) -> bool:
    """True when the environment came whole from S3; False when there is none or it is unusable
    (logged: the caller builds it)."""
    object_key = env_archive_key(key)
    where = s3_uri(bucket, object_key)
    archive = scratch / f"env-{key}.tar.gz"

    def check(_chunk: int = 0) -> None:
        _check_stop(should_stop, f"while {where} was downloading")

    try:
        try:
            download_file(s3, bucket, object_key, archive, progress=check)
        except ClientError as error:
            if not is_missing(error):
                logger.warning("cannot download the cached environment %s: %s", where, error)
            return False
        except (BotoCoreError, OSError) as error:
            logger.warning("cannot download the cached environment %s: %s", where, error)
            return False
        try:
            _extract_environment(archive, env_dir, key, should_stop)
        except (tarfile.TarError, StagingError, OSError, EOFError, zlib.error, ValueError) as error:
            logger.warning("the cached environment %s is unusable (%s): building it", where, error)
            return False
        return True
    finally:
        archive.unlink(missing_ok=True)


def _extract_environment(
    archive: Path, env_dir: Path, key: str, should_stop: Callable[[], bool]
) -> None:
    """Extract into a fresh directory next to env_dir and rename it into place once checked."""
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".restore-{key[:16]}-", dir=env_dir.parent))
    try:
        root = Path(os.path.realpath(staging))
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                _check_stop(should_stop, "while the cached environment was extracting")
                _extract_env_member(tar, member, root)
        if not _is_complete(staging, key):
            raise ValueError(f"the archive lacks its {COMPLETE_MARKER} for {key}")
        if not os.path.exists(staging / "bin" / "python"):
            raise ValueError("its bin/python does not lead to an interpreter on this instance")
        _remove(env_dir)
        os.rename(staging, env_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _extract_env_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    # The venv's bin/python* name the image's interpreter by absolute path, or one another: the
    # one kind of link allowed out of the environment. The rest goes through the code archive's
    # checks (which refuse a link to bin/python, as it resolves outside).
    interpreter_link = member.issym() and _INTERPRETER_LINK.fullmatch(member.name)
    if member.issym() and os.path.isabs(member.linkname) and not interpreter_link:
        raise StagingError(f"environment archive link {member.name!r} points outside it")
    if interpreter_link:
        if not (
            os.path.isabs(member.linkname) or _INTERPRETER_LINK.fullmatch(f"bin/{member.linkname}")
        ):
            raise StagingError(f"environment archive link {member.name!r} is not an interpreter")
        destination = root / member.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        parent = os.path.realpath(destination.parent)
        if not (parent + os.sep).startswith(str(root) + os.sep):
            raise StagingError(f"environment archive member {member.name!r} lands outside it")
        if destination.is_symlink() or destination.exists():
            destination.unlink()
        os.symlink(member.linkname, destination)
        return
    _extract_member(tar, member, root)
    if member.isreg():
        # Keep the mtimes: compiled .pyc files are checked against their sources' mtimes.
        path = root / PurePosixPath(member.name)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _upload(
    s3: Any, bucket: str, key: str, env_dir: Path, scratch: Path, should_stop: Callable[[], bool]
) -> None:
    """Archive the environment and upload it; a failure is only logged (the cache is an
    optimisation). Skipped when another attempt cached the same environment meanwhile."""
    object_key = env_archive_key(key)
    where = s3_uri(bucket, object_key)
    archive = scratch / f"env-{key}.tar.gz"

    def check(_chunk: int = 0) -> None:
        _check_stop(should_stop, f"while the environment was uploading to {where}")

    try:
        if _object_exists(s3, bucket, object_key):
            logger.info("the environment is already cached at %s", where)
            return
        started = time.monotonic()
        _pack(env_dir, archive, check)
        size = archive.stat().st_size
        extra = {"ChecksumAlgorithm": CHECKSUM, "ContentType": "application/gzip"}
        s3.upload_file(str(archive), bucket, object_key, ExtraArgs=extra, Callback=check)
        logger.info(
            "environment cached at %s (%.1f MB) in %.1f s",
            where,
            size / 1e6,
            time.monotonic() - started,
        )
    except (ClientError, BotoCoreError, OSError, tarfile.TarError) as error:
        logger.warning("the environment was not cached at %s: %s", where, error)
    finally:
        archive.unlink(missing_ok=True)


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if is_missing(error):
            return False
        raise
    return True


def _pack(env_dir: Path, archive: Path, check: Callable[[], None]) -> None:
    """A tar.gz of the environment, links kept as links, the completion marker last (an archive
    cut short lacks it)."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo:
        check()
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", compresslevel=_COMPRESS_LEVEL) as tar:
        for child in sorted(env_dir.iterdir()):
            if child.name != COMPLETE_MARKER:
                tar.add(str(child), arcname=child.name, filter=keep)
        tar.add(str(env_dir / COMPLETE_MARKER), arcname=COMPLETE_MARKER, filter=keep)


# --- building ---


def _build(
    installer: str,
    command: str,
    interpreter: str,
    facts: _ImageFacts,
    code_dir: Path,
    env_dir: Path,
    key: str,
    log_path: Path,
    should_stop: Callable[[], bool],
) -> None:
    """Build in place (a pip-built env's console scripts then name their real path): a dir
    without the marker is never used, and a failed or interrupted build is removed."""
    _remove(env_dir)  # what an earlier agent left half built
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)  # PIP_* / UV_* settings, proxies
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")  # the image's Python or nothing
    python = str(env_dir / "bin" / "python")

    def run(label: str, argv: list[str]) -> None:
        _run_installer(label, argv, code_dir, env, log_path, should_stop)

    # Over an image venv, --system-site-packages would expose the *base* interpreter's packages
    # (not the image's, and whatever else that Python has): the image's own come by a .pth.
    system = [] if facts.venv else ["--system-site-packages"]
    try:
        if installer == UV:
            # uv: venv and install (it does not see the image's packages: see the docstring).
            venv = [*system, "--relocatable", "--python", interpreter]
            run(UV, [command, "venv", *venv, str(env_dir)])
            _layer_image_packages(python, facts)
            run(UV, [command, "pip", "install", "--python", python, "-r", DEPENDENCY_FILE])
        else:
            # pip: resolves against sys.path, so the image's torch is reused, not downloaded.
            run("venv", [interpreter, "-m", "venv", *system, str(env_dir)])
            _layer_image_packages(python, facts)
            quiet = ["--disable-pip-version-check", "--no-input"]
            run(PIP, [python, "-m", "pip", "install", *quiet, "-r", DEPENDENCY_FILE])
        _write_marker(env_dir, key, installer, facts.version)
    except OSError as error:  # a full disk, a permission: the environment's fault, not the agent's
        _remove(env_dir)
        raise EnvironmentFailed(f"cannot build the environment in {env_dir}: {error}") from error
    except BaseException:
        _remove(env_dir)
        raise


def _layer_image_packages(python: str, facts: _ImageFacts) -> None:
    """When the image Python is a venv, its own site-packages join the new environment's
    sys.path (after the environment's own), through a .pth file."""
    if not facts.venv or not facts.site_packages:
        return
    site_dir, visible = _ask_python(
        python,
        _ENV_PATHS,
        "the new environment's Python",
        lambda answer: (Path(answer["purelib"]), set(answer["path"])),
    )
    # Only what it does not see already (an image venv with system site-packages lists its
    # base's too); addsitedir also reads the image's own .pth files, as the image Python does.
    lines = [
        f"import site; site.addsitedir({path!r})"
        for path in facts.site_packages
        if path not in visible
    ]
    if lines:
        (site_dir / IMAGE_PACKAGES_PTH).write_text("\n".join(lines) + "\n")


def _run_installer(
    label: str,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    should_stop: Callable[[], bool],
) -> None:
    """Run one installer command in its own process group, output appended to log_path;
    killed (the whole group) as soon as should_stop() says so."""
    _check_stop(should_stop, f"before {label} started")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        offset = log.tell()
        try:
            process = subprocess.Popen(
                argv,
                cwd=str(cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise EnvironmentFailed(f"{label}: cannot start {argv[0]}: {error}") from error
        try:
            returncode = _wait(process, should_stop)
        except BaseException:
            _kill_group(process)
            raise
    if returncode != 0:
        output = _read_from(log_path, offset)
        line = failure_line(label, output) or f"{label} exited with status {returncode}"
        raise EnvironmentFailed(line)


def _wait(process: subprocess.Popen[bytes], should_stop: Callable[[], bool]) -> int:
    while True:
        try:
            return process.wait(timeout=_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if should_stop():
                raise EnvironmentInterrupted(
                    "interrupted while the script's dependencies were installing"
                ) from None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # Nothing of a half-done install is worth keeping: SIGKILL at once, the whole group (pip's
    # and uv's build backends are children).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


def failure_line(label: str, output: str) -> str:
    """The installer's error line, prefixed with its name and cut to ~500 characters: uv's
    `error:` line with its first cause; pip's last `ERROR:` line (else its last `error:` line);
    else the last non-empty line. Empty when there was no output."""
    lines = [_ANSI.sub("", line).rstrip() for line in output.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return ""
    chosen = ""
    if label == UV:
        chosen = _uv_error(lines)
    if not chosen:
        chosen = _last_starting(lines, "ERROR:") or _last_starting(lines, "error:")
    if not chosen:
        chosen = _last_starting(lines, "Error:") or lines[-1].strip()
    return _cut(f"{label}: {chosen}")


def _uv_error(lines: list[str]) -> str:
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            for detail in lines[index + 1 :]:
                text = detail.strip()
                for prefix in _UV_DETAIL_PREFIXES:
                    if text.startswith(prefix):
                        return f"{line.rstrip(':')}: {text[len(prefix) :].strip()}"
                if not detail.startswith(" "):
                    break
            return line
    return ""


def _last_starting(lines: list[str], prefix: str) -> str:
    for line in reversed(lines):
        if line.startswith(prefix):
            return line.strip()
    return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _check_stop(should_stop: Callable[[], bool], when: str) -> None:
    if should_stop():
        raise EnvironmentInterrupted(f"interrupted {when}")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
