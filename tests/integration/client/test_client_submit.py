"""`runctl submit` against a moto stack: content-addressed upload, the RunSpec it starts, and
the experiment record's fields (typed hyperparameters, code hash, git commit and dirtiness)."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from runctl.cli import app
from runctl.client import Client, RunRequest

from .conftest import STACK_NAME


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text("print('train')\n")
    (root / "big.bin").write_bytes(b"\0" * 1000)
    (root / ".gitignore").write_text("*.bin\n")
    monkeypatch.chdir(root)
    return root


def _execution_input(cloud, run_id: str) -> dict:
    sfn = cloud.client("stepfunctions")
    arn = cloud.stack.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
    return json.loads(sfn.describe_execution(executionArn=arn)["input"])


def test_submit_prints_the_run_id_and_starts_the_spec_it_validated(cloud, project):
    result = CliRunner().invoke(
        app,
        [
            "submit",
            "train.py",
            "--hp",
            "lr=0.01",
            "--hp",
            "batch=64",
            "--hp",
            "arch=resnet",
            "--experiment",
            "tuning",
            "--instance-type",
            "g5.xlarge",
            "--on-demand",
            "--max-runtime",
            "2h",
            "--data",
            "s3://datasets/imagenet/",
            "--",
            "--epochs",
            "3",
        ],
    )

    assert result.exit_code == 0, result.output
    run_id = result.output.split("started run ")[1].split()[0]
    spec = _execution_input(cloud, run_id)
    assert spec["hyperparameters"] == {"lr": 0.01, "batch": 64, "arch": "resnet"}
    assert spec["experiment"] == "tuning"
    assert spec["instance_types"] == ["g5.xlarge"]
    assert spec["market"] == "on-demand"
    assert spec["limits"] == {"max_runtime_seconds": 7200}
    assert spec["data"] == [{"s3_uri": "s3://datasets/imagenet/", "name": "imagenet"}]
    assert spec["entry_point"] == "train.py"
    assert spec["args"] == ["--epochs", "3"]
    assert (
        spec["code"]["s3_uri"] == f"s3://{cloud.stack.bucket}/code/{spec['code']['sha256']}.tar.gz"
    )
    assert spec["source"] == {}  # not a git repository: both unknown


def test_an_unchanged_resubmit_uploads_nothing(cloud, project):
    client = Client(stack_name=STACK_NAME)

    first = client.submit(RunRequest(project / "train.py", hyperparameters={"lr": 0.1}))
    # A different hyperparameter, a touched file and an ignored file changed: same code.
    (project / "train.py").write_text("print('train')\n")
    (project / "big.bin").write_bytes(b"\1" * 2000)
    second = client.submit(RunRequest(project / "train.py", hyperparameters={"lr": 0.2}))

    assert first.uploaded_bytes > 0
    assert second.uploaded_bytes == 0
    assert second.code_uri == first.code_uri
    assert cloud.code_objects() == [f"code/{first.spec.code.sha256}.tar.gz"]
    assert first.run_id != second.run_id


def test_the_cli_says_when_nothing_was_uploaded(cloud, project):
    CliRunner().invoke(app, ["submit", "train.py"])

    result = CliRunner().invoke(app, ["submit", "train.py"])

    assert result.exit_code == 0, result.output
    assert "code unchanged, nothing uploaded" in result.output


def test_changed_code_is_uploaded_under_its_new_hash(cloud, project):
    client = Client(stack_name=STACK_NAME)
    first = client.submit(RunRequest(project / "train.py"))
    (project / "train.py").write_text("print('train v2')\n")

    second = client.submit(RunRequest(project / "train.py"))

    assert second.uploaded_bytes > 0
    assert sorted(cloud.code_objects()) == sorted(
        f"code/{s.spec.code.sha256}.tar.gz" for s in (first, second)
    )


def test_the_git_commit_and_dirtiness_are_recorded(cloud, project):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git(
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "0",
    )
    git("add", ".")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "code")
    client = Client(stack_name=STACK_NAME)

    clean = client.submit(RunRequest(project / "train.py"))
    (project / "train.py").write_text("print('edited')\n")
    dirty = client.submit(RunRequest(project / "train.py"))

    head = git("rev-parse", "HEAD")
    assert _execution_input(cloud, clean.run_id)["source"] == {
        "git_commit": head,
        "git_dirty": False,
    }
    assert _execution_input(cloud, dirty.run_id)["source"] == {
        "git_commit": head,
        "git_dirty": True,
    }


def test_quiet_prints_only_the_run_id(cloud, project):
    result = CliRunner().invoke(app, ["submit", "-q", "train.py"])

    assert result.exit_code == 0, result.output
    run_id = result.output.strip()
    assert run_id.startswith("run-")
    assert _execution_input(cloud, run_id)["entry_point"] == "train.py"


def test_a_build_context_is_uploaded_once_under_its_hash_and_named_in_the_spec(cloud, project):
    (project / "env").mkdir()
    (project / "env" / "Dockerfile").write_text("FROM python:3.12\nCOPY req.txt /\n")
    (project / "env" / "req.txt").write_text("numpy\n")
    client = Client(stack_name=STACK_NAME)
    request = RunRequest(project / "train.py", build=project / "env" / "Dockerfile")

    first = client.submit(request)
    (project / "train.py").write_text("print('train v2')\n")  # code changes; the context does not
    second = client.submit(request)

    assert first.context_uploaded_bytes > 0
    assert second.context_uploaded_bytes == 0
    build = _execution_input(cloud, second.run_id)["container"]["build"]
    sha256 = build["context"]["sha256"]
    assert build["context"]["s3_uri"] == f"s3://{cloud.stack.bucket}/contexts/{sha256}.tar.gz"
    assert build["dockerfile"] == "Dockerfile"
    assert second.spec.container.build.tag == first.spec.container.build.tag  # same image
    listed = cloud.client("s3").list_objects_v2(Bucket=cloud.stack.bucket, Prefix="contexts/")
    assert [item["Key"] for item in listed["Contents"]] == [f"contexts/{sha256}.tar.gz"]
