"""Docker build contexts (issue #12): packaged as `docker build` would send them (.dockerignore
with Docker's rules), content-addressed under contexts/, and planned into the RunSpec."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from runctl.errors import SpecError
from runctl.packaging import build_context_files, package_build_context
from runctl.run_request import RunRequest, plan_run

CODE_URI = "s3://bucket/code/" + "a" * 64 + ".tar.gz"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_dockerignore_is_read_with_docker_s_rules(tmp_path):
    _write(
        tmp_path,
        {
            "Dockerfile": "FROM base\n",
            "requirements.txt": "numpy\n",
            "train.py": "",
            "data/big.bin": "",
            "pkg/a.py": "",
            "pkg/keep.py": "",
            "pkg/deep/b.py": "",
            # docker anchors patterns at the context root ('*.py' is not '**/*.py'), keeps
            # '!' exceptions and always sends the Dockerfile and .dockerignore
            ".dockerignore": "data\n*.py\npkg/**/*.py\n!pkg/keep.py\nDockerfile\n",
        },
    )

    files = build_context_files(tmp_path, "Dockerfile")

    assert files == [".dockerignore", "Dockerfile", "pkg/keep.py", "requirements.txt"]


def test_the_same_context_gives_the_same_archive_and_a_changed_one_a_new_hash(tmp_path):
    _write(tmp_path, {"Dockerfile": "FROM base\nCOPY req.txt /\n", "req.txt": "numpy\n"})
    first = package_build_context(tmp_path, "Dockerfile")
    (tmp_path / "req.txt").write_text("numpy\n")  # touched, same bytes
    second = package_build_context(tmp_path, "Dockerfile")
    (tmp_path / "req.txt").write_text("numpy==2.4.6\n")
    third = package_build_context(tmp_path, "Dockerfile")

    assert first.data == second.data and first.sha256 == second.sha256
    assert first.key == f"contexts/{first.sha256}.tar.gz"
    assert third.sha256 != first.sha256
    with tarfile.open(fileobj=io.BytesIO(third.data)) as archive:
        assert archive.extractfile("req.txt").read() == b"numpy==2.4.6\n"  # type: ignore[union-attr]


def test_executable_bits_survive_for_copy_into_the_image(tmp_path):
    _write(tmp_path, {"Dockerfile": "FROM base\n", "entry.sh": "#!/bin/sh\n"})
    (tmp_path / "entry.sh").chmod(0o755)
    package = package_build_context(tmp_path, "Dockerfile")
    with tarfile.open(fileobj=io.BytesIO(package.data)) as archive:
        assert archive.getmember("entry.sh").mode == 0o755
        assert archive.getmember("Dockerfile").mode == 0o644


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    _write(
        root,
        {"train.py": "", "env/Dockerfile": "FROM base\n", "env/requirements.txt": "numpy\n"},
    )
    monkeypatch.chdir(root)
    return root


def test_build_context_defaults_to_the_dockerfile_s_folder(project):
    plan = plan_run(RunRequest(project / "train.py", build=Path("env/Dockerfile")))

    assert plan.build is not None
    assert plan.build.context == project / "env"
    assert plan.build.dockerfile == "Dockerfile"
    assert plan.context_package is not None
    assert plan.context_package.files == ("Dockerfile", "requirements.txt")
    spec = plan.spec(CODE_URI, "a" * 64, None, context=("s3://bucket/contexts/x.tar.gz", "b" * 64))
    assert spec.container is not None and spec.container.build is not None
    assert spec.container.build.context.sha256 == "b" * 64
    assert spec.container.image is None


def test_a_build_context_and_build_args_reach_the_spec(project):
    request = RunRequest(
        project / "train.py",
        build=Path("env/Dockerfile"),
        build_context=Path("."),
        build_args={"CUDA": "12.4", "Q": "$(id) 'a b'"},
    )
    plan = plan_run(request)

    assert plan.build is not None and plan.build.dockerfile == "env/Dockerfile"
    spec = plan.spec(CODE_URI, "a" * 64, None, context=("s3://bucket/contexts/x.tar.gz", "b" * 64))
    assert spec.container.build.args == {"CUDA": "12.4", "Q": "$(id) 'a b'"}  # type: ignore[union-attr]


def test_the_spec_cannot_start_before_the_context_is_uploaded(project):
    plan = plan_run(RunRequest(project / "train.py", build=Path("env/Dockerfile")))
    with pytest.raises(SpecError, match="build context must be uploaded"):
        plan.spec(CODE_URI, "a" * 64, None)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"image": "python:3.12", "build": Path("env/Dockerfile")}, "--image or --build, not both"),
        ({"build": Path("env/Nope")}, "no such Dockerfile"),
        ({"build": Path("env/Dockerfile"), "build_context": Path("nowhere")}, "not a folder"),
        (
            {"build": Path("Dockerfile2"), "build_context": Path("env")},
            "not inside the build context",
        ),
        ({"build_args": {"A": "1"}}, "need --build DOCKERFILE"),
        ({"image": "Not An Image"}, "container.image"),
    ],
)
def test_container_mistakes_are_refused_before_anything_is_packaged(
    project, request_fields, message
):
    (project / "Dockerfile2").write_text("FROM base\n")
    with pytest.raises(SpecError, match=message):
        plan_run(RunRequest(project / "train.py", **request_fields))


def test_runctl_toml_names_the_dockerfile_from_its_own_folder(project, tmp_path, monkeypatch):
    (project / ".runctl.toml").write_text('build = "env/Dockerfile"\n[build_args]\nCUDA = "12.4"\n')
    monkeypatch.chdir(tmp_path)  # elsewhere: the config's paths still count from its folder

    plan = plan_run(RunRequest(project / "train.py"))

    assert plan.build is not None
    assert plan.build.context == project / "env"
    assert dict(plan.build.args) == {"CUDA": "12.4"}
