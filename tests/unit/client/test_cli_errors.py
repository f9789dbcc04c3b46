"""Mistakes a user can make before any AWS call: one line on what is wrong and what to do,
a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from runctl.cli import app


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "train.py").write_text("print('train')\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """An environment in which botocore finds no credentials anywhere (and asks no IMDS)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize("command", ["submit", "local run"])
def test_a_missing_script_is_named(project, command):
    result = CliRunner().invoke(app, [*command.split(), "nope.py"])

    line = _one_line_error(result)
    assert result.exit_code == 2
    assert "script not found: nope.py" in line
    assert "check the path" in line


@pytest.mark.parametrize("command", ["submit", "local run"])
def test_bad_hp_syntax_says_how_to_write_it(project, command):
    result = CliRunner().invoke(app, [*command.split(), "train.py", "--hp", "lr"])

    line = _one_line_error(result)
    assert result.exit_code == 2
    assert "--hp 'lr': expected key=value, for example --hp lr=0.01" in line
    assert not (project / ".runctl-local").exists()


def test_an_invalid_option_names_the_runspec_field(project):
    result = CliRunner().invoke(app, ["submit", "train.py", "--instance-type", "BIG"])

    line = _one_line_error(result)
    assert "instance_types.0" in line


def test_a_malformed_runctl_toml_names_the_key(project):
    (project / ".runctl.toml").write_text('instance_types = "g5.xlarge"\n')

    result = CliRunner().invoke(app, ["submit", "train.py"])

    line = _one_line_error(result)
    assert result.exit_code == 2
    assert "key 'instance_types'" in line


def test_no_credentials_says_how_to_get_some(project, no_credentials):
    result = CliRunner().invoke(app, ["status", "run-123"])

    line = _one_line_error(result)
    assert result.exit_code == 1
    assert "no AWS credentials found" in line
    assert "aws configure" in line


def test_submit_without_credentials_fails_before_starting_anything(project, no_credentials):
    result = CliRunner().invoke(app, ["submit", "train.py", "--hp", "lr=0.1"])

    assert "no AWS credentials found" in _one_line_error(result)


def test_an_unknown_local_run_id_points_at_the_local_list(project):
    result = CliRunner().invoke(app, ["local", "runs", "show", "run-nope"])

    line = _one_line_error(result)
    assert "no run 'run-nope' in local history" in line
    assert "runctl local runs list" in line


def test_submit_of_a_local_data_folder_says_to_upload_it_to_s3(project):
    (project / "ds").mkdir()
    (project / "ds" / "x.csv").write_text("1\n")

    result = CliRunner().invoke(app, ["submit", "train.py", "--data", "./ds"])

    line = _one_line_error(result)
    assert result.exit_code == 2
    assert "--data './ds' is a local path" in line
    assert "upload it first" in line
    assert "runctl local run` takes local folders" in line


@pytest.mark.parametrize(
    ("arrange", "expected"),
    [
        (lambda root: (root / "ds").mkdir(), "ds holds no files to upload; put the data in it"),
        (lambda root: None, "--data './ds': no such file or folder"),
    ],
)
def test_local_run_of_an_empty_or_missing_data_folder_fails_before_anything_is_created(
    project, arrange, expected
):
    arrange(project)

    result = CliRunner().invoke(app, ["local", "run", "train.py", "--data", "./ds"])

    line = _one_line_error(result)
    assert result.exit_code == 2
    assert expected in line
    assert not (project / ".runctl-local").exists()


@pytest.mark.parametrize("flags", [["--image", "python:3.12"], ["--build", "Dockerfile"]])
def test_a_container_run_on_a_machine_without_docker_is_refused_before_anything_starts(
    project, monkeypatch, flags
):
    (project / "Dockerfile").write_text("FROM python:3.12\n")
    monkeypatch.setenv("PATH", str(project / "no-docker-here"))
    work_dir = project / "work"

    result = CliRunner().invoke(
        app, ["local", "--work-dir", str(work_dir), "run", "train.py", *flags]
    )

    line = _one_line_error(result)
    assert "cannot run this container run locally" in line
    assert "No `docker` command on PATH" in line and "make container-engine" in line
    assert not work_dir.exists()  # no local session (emulator, instances) was started
