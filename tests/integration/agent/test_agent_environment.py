"""The script's environment built with real installers and cached in (moto's) S3.

Two tests reach PyPI through uv (a small package, a missing one); the others install nothing
from the network: a local stand-in for uv makes a real venv (without pip) and records its runs,
and the pip test installs nothing (its requirement is already in the image venv).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from instance_agent.environment import (
    COMPLETE_MARKER,
    INSTALLED,
    RESTORED,
    EnvironmentFailed,
    EnvironmentInterrupted,
    ImagePython,
    PreparedEnvironment,
    cache_key,
    prepare_environment,
)
from instance_agent.layout import env_archive_key

REGION = "us-east-1"
BUCKET = "runctl-envs-test"
# A small pure-Python package from PyPI that runctl's own environment does not have.
PYPI_PACKAGE = "humanize"
# The runctl venv's python stands in for the image's: a virtualenv, like the DLAMI's /opt/pytorch.
PLAIN_IMAGE = ImagePython("al2023", sys.executable, "x86_64", layered=False)


@pytest.fixture
def s3(moto_backend: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def uv() -> str:
    """The real uv, installed with runctl's dev dependencies (beside this python, or on PATH)."""
    found = shutil.which(
        "uv", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if found is None:
        pytest.fail("uv is not installed: it is one of runctl's dev dependencies")
    return found


@pytest.fixture
def place(tmp_path: Path) -> Callable[..., Path]:
    """A code dir holding requirements.txt (and other files)."""

    def make(requirements: str, **files: str) -> Path:
        code = tmp_path / "code"
        code.mkdir(exist_ok=True)
        (code / "requirements.txt").write_text(requirements)
        for name, text in files.items():
            (code / name).write_text(text)
        return code

    return make


class FakeUv:
    """A uv stand-in: `venv` makes a real venv without pip, `pip install` does what it is told
    (succeed, fail, or hang after writing its pid); every run is recorded in calls.log."""

    def __init__(self, root: Path, pip_action: str = "exit 0") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "uv"
        self.calls = root / "calls.log"
        self.pid_file = root / "installer.pid"
        self.path.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> "{self.calls}"\n'
            'case "$1" in\n'
            '  venv) for last in "$@"; do :; done\n'
            f'        exec "{sys.executable}" -m venv --without-pip --system-site-packages \\\n'
            '             "$last" ;;\n'
            f"  pip) {pip_action} ;;\n"
            "esac\n"
        )
        self.path.chmod(0o755)

    @classmethod
    def hanging(cls, root: Path) -> FakeUv:
        pid = root / "installer.pid"
        return cls(root, f'echo $$ > "{pid}.tmp" && mv "{pid}.tmp" "{pid}" && exec sleep 600')

    def runs(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


class BrokenS3:
    """Fails the test if the environment is looked for in S3 at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 was called ({name}) though the environment is on the instance")


class FailingUploads:
    """moto's client, except that uploads fail."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def upload_file(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("injected: network unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def _prepare(
    code: Path,
    s3: Any,
    root: Path,
    uv: str | None,
    image: ImagePython = PLAIN_IMAGE,
    should_stop: Callable[[], bool] = lambda: False,
) -> PreparedEnvironment:
    return prepare_environment(
        code,
        image,
        s3,
        BUCKET,
        envs_root=root / "envs",
        scratch=root / "scratch",
        log_path=root / "environment.log",
        uv=uv,
        should_stop=should_stop,
    )


def _python(env_python: str, code: str) -> str:
    return subprocess.run(
        [env_python, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def _keys(s3: Any) -> list[str]:
    return [entry["Key"] for entry in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def _leftovers(root: Path) -> list[str]:
    envs = root / "envs"
    return sorted(path.name for path in envs.iterdir()) if envs.exists() else []


def test_given_requirements_then_uv_builds_an_env_that_imports_them_and_caches_it(
    s3, uv, place, tmp_path
):
    code = place(f"{PYPI_PACKAGE}\n")
    assert subprocess.run(
        [sys.executable, "-c", f"import {PYPI_PACKAGE}"], capture_output=True, check=False
    ).returncode

    first = _prepare(code, s3, tmp_path / "instance-1", uv)

    assert (first.action, first.installer) == (INSTALLED, "uv")
    assert first.python == str(
        tmp_path / "instance-1" / "envs" / first.cache_key / "bin" / "python"
    )
    assert first.seconds > 0
    module = _python(first.python, f"import {PYPI_PACKAGE}; print({PYPI_PACKAGE}.__file__)")
    assert module.startswith(str(tmp_path / "instance-1" / "envs" / first.cache_key))
    # The image venv's own packages are importable too (boto3 is in runctl's venv).
    assert _python(first.python, "import boto3; print('ok')") == "ok"
    assert _keys(s3) == [env_archive_key(first.cache_key or "")]
    log = (tmp_path / "instance-1" / "environment.log").read_text()
    assert f"+ {PYPI_PACKAGE}==" in log

    # A resumed attempt on a new instance: restored from S3, no installer run at all.
    never = FakeUv(tmp_path / "never", pip_action="exit 1")
    second = _prepare(code, s3, tmp_path / "instance-2", str(never.path))

    assert (second.action, second.cache_key, second.installer) == (
        RESTORED,
        first.cache_key,
        "uv",
    )
    assert never.runs() == []
    assert _python(second.python, f"import {PYPI_PACKAGE}; print('restored')") == "restored"
    assert _leftovers(tmp_path / "instance-2") == [first.cache_key]
    assert list((tmp_path / "instance-2" / "scratch").iterdir()) == []


def test_given_a_missing_package_then_preparing_fails_with_uvs_error_and_leaves_nothing(
    s3, uv, place, tmp_path
):
    code = place("no-such-package-runctl-test==0.0.1\n")

    with pytest.raises(EnvironmentFailed) as caught:
        _prepare(code, s3, tmp_path, uv)

    message = str(caught.value)
    assert message.startswith("uv: error: No solution found when resolving dependencies: ")
    assert "no-such-package-runctl-test" in message
    assert "\n" not in message
    assert _leftovers(tmp_path) == []
    assert _keys(s3) == []
    assert "no-such-package-runctl-test" in (tmp_path / "environment.log").read_text()


def test_given_the_env_on_this_instance_then_it_is_used_without_s3_or_installer(
    s3, place, tmp_path
):
    code = place("anything==1.0\n")
    fake = FakeUv(tmp_path / "fake")
    built = _prepare(code, s3, tmp_path, str(fake.path))
    runs = fake.runs()

    again = _prepare(code, BrokenS3(), tmp_path, str(fake.path))

    assert (built.action, again.action) == (INSTALLED, RESTORED)
    assert again.python == built.python
    assert again.seconds < 1
    assert fake.runs() == runs
    # The "image" here is the test's own virtualenv: layered by .pth, not --system-site-packages.
    assert [run.split()[:2] for run in runs] == [["venv", "--relocatable"], ["pip", "install"]]


def test_given_a_half_built_env_on_this_instance_then_it_is_built_again(s3, place, tmp_path):
    code = place("anything==1.0\n")
    key = cache_key(b"anything==1.0\n", PLAIN_IMAGE, sys.version, "uv")
    half = tmp_path / "envs" / key
    (half / "lib").mkdir(parents=True)
    (half / "lib" / "partial.py").write_text("")
    fake = FakeUv(tmp_path / "fake")

    prepared = _prepare(code, s3, tmp_path, str(fake.path))

    assert (prepared.action, prepared.cache_key) == (INSTALLED, key)
    assert not (half / "lib" / "partial.py").exists()
    assert (half / COMPLETE_MARKER).exists()


def test_an_env_cached_on_one_ami_is_restored_on_that_ami_and_built_anew_on_another(
    s3, place, tmp_path
):
    # Given an environment built and cached by an instance of one AMI
    code = place("anything==1.0\n")
    first_ami = replace(PLAIN_IMAGE, ami_id="ami-0aaaaaaaaaaaaaaaa")
    built = _prepare(
        code, s3, tmp_path / "instance-1", str(FakeUv(tmp_path / "fake-1").path), image=first_ami
    )

    # When another instance of that AMI, then one of another AMI, prepare it
    never = FakeUv(tmp_path / "never", pip_action="exit 1")
    same = _prepare(code, s3, tmp_path / "instance-2", str(never.path), image=first_ami)
    fake = FakeUv(tmp_path / "fake-3")
    other_ami = replace(PLAIN_IMAGE, ami_id="ami-0bbbbbbbbbbbbbbbb")
    other = _prepare(code, s3, tmp_path / "instance-3", str(fake.path), image=other_ami)

    # Then the same AMI restores it without an installer, the other builds its own and caches it
    assert (same.action, same.cache_key) == (RESTORED, built.cache_key)
    assert never.runs() == []
    assert other.action == INSTALLED and other.cache_key != built.cache_key
    assert len(fake.runs()) == 2
    assert sorted(_keys(s3)) == sorted(
        env_archive_key(prepared.cache_key or "") for prepared in (built, other)
    )


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_given_a_damaged_cached_archive_then_the_env_is_built_instead(
    s3, place, tmp_path, caplog, damage
):
    code = place("anything==1.0\n")
    built = _prepare(code, s3, tmp_path / "instance-1", str(FakeUv(tmp_path / "fake-1").path))
    object_key = env_archive_key(built.cache_key or "")
    body = s3.get_object(Bucket=BUCKET, Key=object_key)["Body"].read()
    damaged = body[: len(body) // 2] if damage == "truncated" else b"not a tarball" * 100
    s3.put_object(Bucket=BUCKET, Key=object_key, Body=damaged)
    fake = FakeUv(tmp_path / "fake-2")

    with caplog.at_level(logging.WARNING, logger="instance_agent.environment"):
        prepared = _prepare(code, s3, tmp_path / "instance-2", str(fake.path))

    assert prepared.action == INSTALLED
    assert len(fake.runs()) == 2
    assert "is unusable" in caplog.text
    assert _leftovers(tmp_path / "instance-2") == [prepared.cache_key]
    assert _python(prepared.python, "print('whole')") == "whole"


def test_given_a_cached_archive_with_a_link_out_of_the_env_then_it_is_not_extracted(
    s3, place, tmp_path
):
    code = place("anything==1.0\n")
    key = cache_key(b"anything==1.0\n", PLAIN_IMAGE, sys.version, "uv")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, target in (("bin/python", sys.executable), ("bin/passwd", "/etc/passwd")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tar.addfile(link)
        marker = json.dumps({"key": key}).encode()
        info = tarfile.TarInfo(COMPLETE_MARKER)
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    s3.put_object(Bucket=BUCKET, Key=env_archive_key(key), Body=buffer.getvalue())
    fake = FakeUv(tmp_path / "fake")

    prepared = _prepare(code, s3, tmp_path, str(fake.path))

    assert prepared.action == INSTALLED
    assert not (tmp_path / "envs" / key / "bin" / "passwd").is_symlink()
    assert _leftovers(tmp_path) == [key]


def test_given_a_failing_upload_then_the_env_is_still_ready(s3, place, tmp_path, caplog):
    code = place("anything==1.0\n")

    with caplog.at_level(logging.WARNING, logger="instance_agent.environment"):
        prepared = _prepare(code, FailingUploads(s3), tmp_path, str(FakeUv(tmp_path / "f").path))

    assert prepared.action == INSTALLED
    assert "was not cached" in caplog.text and "network unreachable" in caplog.text
    assert _keys(s3) == []
    assert list((tmp_path / "scratch").iterdir()) == []


def test_given_a_stop_while_installing_then_the_installer_is_killed_and_nothing_is_left(
    s3, place, tmp_path
):
    code = place("anything==1.0\n")
    fake = FakeUv.hanging(tmp_path / "fake")

    with pytest.raises(EnvironmentInterrupted):
        _prepare(code, s3, tmp_path, str(fake.path), should_stop=fake.pid_file.exists)

    pid = int(fake.pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert _leftovers(tmp_path) == []
    assert _keys(s3) == []


def test_given_a_layered_image_venv_then_pip_reuses_its_packages_and_installs_none(
    s3, place, tmp_path
):
    # An "image" venv with a package installed, like the DLAMI's torch in /opt/pytorch.
    image_dir = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(image_dir)], check=True)
    image_python = str(image_dir / "bin" / "python")
    site = Path(_python(image_python, "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    (site / "runctl_layer_probe").mkdir()
    (site / "runctl_layer_probe" / "__init__.py").write_text("WHERE = 'the image'\n")
    info = site / "runctl_layer_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runctl-layer-probe\nVersion: 1.0\n"
    )
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    image = ImagePython("dlami-pytorch", image_python, "x86_64", layered=True)
    code = place("runctl-layer-probe==1.0\n")

    prepared = _prepare(code, s3, tmp_path, uv=None, image=image)

    assert (prepared.action, prepared.installer) == (INSTALLED, "pip")
    assert _python(prepared.python, "import runctl_layer_probe as p; print(p.WHERE)") == "the image"
    env_site = Path(
        _python(prepared.python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    )
    assert env_site.is_relative_to(tmp_path / "envs" / (prepared.cache_key or ""))
    assert not list(env_site.glob("runctl_layer_probe*"))  # not installed again
    log = (tmp_path / "environment.log").read_text()
    assert "Requirement already satisfied: runctl-layer-probe==1.0" in log
    assert _keys(s3) == [env_archive_key(prepared.cache_key or "")]


def test_given_an_image_venv_then_the_base_interpreters_packages_stay_out_of_the_env(
    s3, place, tmp_path, uv
):
    # Given an empty image venv over some interpreter (local mode's stand-in for AL2023), whose
    # base site-packages may hold anything at all
    image_dir = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(image_dir)], check=True)
    image_python = str(image_dir / "bin" / "python")
    base_site = _python(
        image_python,
        "import sys, sysconfig; base = {'base': sys.base_prefix, 'platbase': sys.base_prefix}; "
        "print(sysconfig.get_paths(vars=base)['purelib'])",
    )
    image = ImagePython("al2023", image_python, "x86_64", layered=False)

    # When an environment is built over it (with uv, as on a plain image)
    prepared = _prepare(place(f"{PYPI_PACKAGE}\n"), s3, tmp_path, uv, image=image)

    # Then the env sees its own packages and the image's, never the base interpreter's
    env_path = _python(prepared.python, "import sys; print('\\n'.join(sys.path))").splitlines()
    assert base_site not in env_path
    assert _python(prepared.python, f"import {PYPI_PACKAGE}; print('ok')") == "ok"


def test_a_restore_never_asks_for_uv(s3, place, tmp_path, uv):
    code = place(f"{PYPI_PACKAGE}\n")
    built = _prepare(code, s3, tmp_path / "first", uv)

    def no_uv() -> str | None:
        raise AssertionError("uv was asked for, but the environment is in the cache")

    again = _prepare(code, s3, tmp_path / "second", no_uv)

    assert (built.action, again.action) == (INSTALLED, RESTORED)
    assert again.cache_key == built.cache_key


def test_without_uv_a_plain_image_builds_with_pip_under_the_same_key(s3, place, tmp_path, uv):
    code = place(f"{PYPI_PACKAGE}\n")

    with_pip = _prepare(code, s3, tmp_path / "no-uv", lambda: None)

    assert (with_pip.action, with_pip.installer) == (INSTALLED, "pip")
    assert with_pip.cache_key == cache_key(
        f"{PYPI_PACKAGE}\n".encode(),
        PLAIN_IMAGE,
        _python(sys.executable, "import sys; print(sys.version)"),
        "uv",
    )
    assert _python(with_pip.python, f"import {PYPI_PACKAGE}; print('ok')") == "ok"
