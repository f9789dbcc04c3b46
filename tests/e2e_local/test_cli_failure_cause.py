"""A run refused by a Lambda step, as the CLI shows it on an 80-column terminal: the cause as
`errorType: errorMessage` on one line; the stack trace only with --verbose (or in `runctl logs`).

ValidateRun really raises RunSpecInvalid in the emulated deployment: `local run` loses its code
object between the upload and the start; the cloud commands read an execution started with an
absolute entry point (the client itself would refuse that one before starting anything).
"""

from __future__ import annotations

import traceback

import pytest
from typer.testing import CliRunner

from lambdas.models.run_spec import split_s3_uri
from runctl.cli import app
from runctl.local.session import LocalSession
from runctl.packaging import CodePackage
from tests.conftest import wide_console
from tests.e2e_local.conftest import QUICK, ScriptRunner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_cli_failure_cause")]


def _invoke_on_80_columns(*args: str, exit_code: int) -> str:
    with wide_console(80):
        result = CliRunner(env={"COLUMNS": "80"}).invoke(app, list(args))
    assert result.exit_code == exit_code, (
        result.output,
        "".join(traceback.format_exception(result.exception)) if result.exception else "",
    )
    return result.output


def _lines_naming(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


@pytest.fixture
def code_lost_after_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    """`local run` uploads its code, then the object is gone before ValidateRun looks for it."""
    upload = LocalSession.upload_code

    def upload_then_lose(session: LocalSession, package: CodePackage) -> tuple[str, int]:
        code_uri, uploaded = upload(session, package)
        bucket, key = split_s3_uri(code_uri)
        session.s3.delete_object(Bucket=bucket, Key=key)
        return code_uri, uploaded

    monkeypatch.setattr(LocalSession, "upload_code", upload_then_lose)


def test_given_a_run_refused_by_validate_run_when_run_locally_then_its_cause_is_one_line(
    project, code_lost_after_upload
):
    # When the user runs the example locally and ValidateRun cannot read its code
    output = _invoke_on_80_columns("local", "run", "train_tiny.py", *QUICK, exit_code=1)

    # Then the run's error is one line, errorType: errorMessage, naming the field
    [line] = _lines_naming(output, "RunSpecInvalid")
    assert line.startswith("  RunSpecInvalid: code.s3_uri: cannot read s3://")
    assert line.endswith("(no such object)")
    # ...and no stack trace, in any form
    assert "stackTrace" not in output
    assert "Traceback" not in output
    assert "errorType" not in output


def test_given_verbose_when_a_refused_run_is_run_locally_then_the_stack_trace_is_shown(
    project, code_lost_after_upload
):
    output = _invoke_on_80_columns(
        "local", "run", "train_tiny.py", *QUICK, "--verbose", exit_code=1
    )

    [line, *trace] = _lines_naming(output, "RunSpecInvalid")
    assert line.startswith("  RunSpecInvalid: code.s3_uri: cannot read s3://")
    assert "Traceback (most recent call last):" in output
    assert "_check_code_exists" in output
    # (the trace ends with the exception itself, once more)
    assert trace and trace[-1].strip().startswith("lambdas.errors.RunSpecInvalid: code.s3_uri:")


def test_given_a_run_refused_by_validate_run_when_the_cloud_commands_show_it_then_one_line(
    cloud, tmp_path
):
    # Given an execution started with an absolute entry point: ValidateRun raises
    runner = ScriptRunner(cloud, tmp_path)
    spec = runner.spec("print('never runs')") | {"entry_point": "/etc/passwd"}
    outcome = runner.run_spec(spec)
    assert (outcome.execution_status, outcome.error) == ("FAILED", "RunSpecInvalid")
    run_id = outcome.run_id

    # When the user asks for its status, follows it, and asks for its logs
    status = _invoke_on_80_columns("status", run_id, exit_code=0)
    followed = _invoke_on_80_columns("status", run_id, "--wait", exit_code=1)
    logs = _invoke_on_80_columns("logs", run_id, exit_code=1)

    # Then each says why in one line, without the stack trace
    [line] = _lines_naming(status, "RunSpecInvalid")
    assert line.startswith("  it never started: RunSpecInvalid: RunSpec is invalid: entry_point:")
    assert [line.strip() for line in _lines_naming(followed, "RunSpecInvalid")] == [
        line.strip(),
        line.strip().removeprefix("it never started: "),
    ]
    for output in (status, followed):
        assert "Traceback" not in output and "stackTrace" not in output
    # ...but `runctl logs`, which has nothing else to show, shows the trace before the error
    assert "Traceback (most recent call last):" in logs
    assert (
        logs.strip()
        .splitlines()[-1]
        .startswith(
            f"error: run {run_id} never started, so it has no logs (RunSpecInvalid: RunSpec is"
        )
    )

    # When the user asks for the status with --verbose
    verbose = _invoke_on_80_columns("status", run_id, "--verbose", exit_code=0)

    # Then the stack trace follows the line
    assert "Traceback (most recent call last):" in verbose
    assert "validate_run" in verbose
