"""`runctl sweep` options as functions: --grid/--sample/--random/--objective to a SweepSpec,
checked before anything starts; and the summary table."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from lambdas.errors import SweepNotFound as SweepNotFoundInS3
from lambdas.logic.sweeps import sweep_points
from lambdas.models.sweep_spec import Choice, LogUniform
from lambdas.models.sweep_summary import (
    SweepCounts,
    SweepRunResult,
    SweepRunStatus,
    SweepSummary,
    SweepVerdict,
)
from runctl.errors import AwsRequestFailed, SpecError
from runctl.render_sweeps import sweep_summary_table
from runctl.run_request import RunRequest
from runctl.sweeps import (
    SweepOptions,
    build_sweep_spec,
    cancel_sweep,
    checked_sweep,
    new_sweep_id,
    parse_grid,
    parse_objective,
    parse_sample,
    prepare_sweep,
)

BASE: dict[str, Any] = {
    "code": {"s3_uri": "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"},
    "entry_point": "train.py",
}


def test_grid_values_are_typed_like_hp_values():
    grid = parse_grid(["lr=0.001,0.01", "batch=32,64", "amp=true,false", "opt=adam,sgd"])

    assert grid == {
        "lr": [0.001, 0.01],
        "batch": [32, 64],
        "amp": [True, False],
        "opt": ["adam", "sgd"],
    }


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["lr"], "expected NAME=..., for example --grid lr=0.001,0.01,0.1"),
        (["lr="], "expected NAME=..."),
        (["lr=0.1,,0.2"], "an empty value in the list"),
        (["lr=0.1", "lr=0.2"], "lr is already swept by another --grid"),
    ],
)
def test_wrong_grid_options_are_refused_naming_the_option(options, problem):
    with pytest.raises(SpecError, match=problem):
        parse_grid(options)


def test_sample_options_describe_the_random_space():
    space = parse_sample(
        ["lr=log_uniform:0.0001:0.1", "drop=uniform:0:0.5", "depth=int_uniform:2:6", "o=choice:a,b"]
    )

    assert space == {
        "lr": {"log_uniform": [0.0001, 0.1]},
        "drop": {"uniform": [0, 0.5]},
        "depth": {"int_uniform": [2, 6]},
        "o": {"choice": ["a", "b"]},
    }


@pytest.mark.parametrize("option", ["lr=normal:0:1", "lr=uniform:0", "lr=choice:", "lr=uniform"])
def test_wrong_sample_options_are_refused(option):
    with pytest.raises(SpecError, match="expected NAME=uniform:LOW:HIGH"):
        parse_sample([option])


def test_objective_must_name_a_metric_and_a_direction():
    assert parse_objective("val_loss:min") == "val_loss:min"
    with pytest.raises(SpecError, match="expected METRIC:min or METRIC:max"):
        parse_objective("val_loss")


def test_grid_options_make_a_grid_sweep_with_its_settings():
    spec = build_sweep_spec(
        BASE,
        grid=["lr=0.001,0.01,0.1", "batch=32,64"],
        max_parallel=2,
        objective="loss:min",
        tolerated_failure_percentage=20,
        stop_on_failure=True,
    )

    assert spec.run_count == 6
    assert (spec.max_parallel, spec.objective) == (2, "loss:min")
    assert (spec.tolerated_failure_percentage, spec.stop_on_failure) == (20, True)


def test_random_without_sample_draws_distinct_grid_combinations_instead_of_crossing():
    spec = build_sweep_spec(BASE, grid=["lr=0.1,0.01,0.001", "batch=32,64"], random=4, seed=9)

    assert spec.grid == {}
    assert spec.random is not None and spec.random.seed == 9
    assert isinstance(spec.random.space["lr"], Choice)
    points = sweep_points(spec)
    assert len({(point["lr"], point["batch"]) for point in points}) == 4


def test_random_with_sample_combines_every_grid_point_with_every_draw():
    spec = build_sweep_spec(
        BASE, grid=["batch=32,64"], samples=["lr=log_uniform:0.0001:0.1"], random=3
    )

    assert spec.grid == {"batch": [32, 64]}
    assert spec.random is not None and isinstance(spec.random.space["lr"], LogUniform)
    assert spec.run_count == 6


def test_seed_or_sample_without_random_is_refused():
    with pytest.raises(SpecError, match="need --random N"):
        build_sweep_spec(BASE, grid=["lr=0.1"], seed=3)


def test_a_setting_out_of_range_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"invalid sweep: max_parallel: Input should be"):
        build_sweep_spec(BASE, grid=["lr=0.1"], max_parallel=0)


def test_checked_sweep_refuses_what_expand_sweep_would():
    spec = build_sweep_spec(BASE, grid=["lr=0.1"])

    with pytest.raises(SpecError, match="sweep id"):
        checked_sweep(spec, "not a valid id")
    assert checked_sweep(spec.model_dump(mode="json"), new_sweep_id()) == spec


def _line(index: int, status: SweepRunStatus, value: float | None, **more: Any) -> SweepRunResult:
    return SweepRunResult(
        index=index,
        run_id=f"sw-r{index:03d}",
        swept={"lr": [0.1, 0.01, 5.0][index]},
        status=status,
        objective_value=value,
        **more,
    )


def test_summary_table_lists_every_run_and_stars_the_best():
    runs = [
        _line(0, SweepRunStatus.SUCCEEDED, 0.25, cost_usd=0.5, duration_seconds=75),
        _line(1, SweepRunStatus.SUCCEEDED, 0.125),
        _line(2, SweepRunStatus.FAILED, None, error="(script-failed, exit code 3): diverged"),
    ]
    summary = SweepSummary(
        sweep_id="sw",
        execution_arn="arn:aws:states:us-east-1:1:execution:Sweep:sw",
        verdict=SweepVerdict.SUCCEEDED,
        message="2 of 3 runs succeeded, 1 failed",
        objective="loss:min",
        best=runs[1],
        counts=SweepCounts(total=3, succeeded=2, failed=1),
        tolerated_failure_percentage=50,
        stop_on_failure=False,
        total_cost_usd=0.5,
        runs=runs,
        written_at=datetime(2026, 11, 23, tzinfo=UTC).isoformat(),
    )
    console = Console(record=True, width=200)

    console.print(sweep_summary_table(summary))

    text = console.export_text()
    assert "sweep sw: SUCCEEDED - 2 of 3 runs succeeded, 1 failed" in text
    assert "sw-r001 *" in text
    assert "loss:min" in text
    assert "exit code 3" in text
    assert "1m15s" in text and "$0.50" in text
    assert "* best by loss:min: sw-r001; total cost $0.50" in text


def test_summary_table_shows_values_and_errors_as_text_not_markup():
    run = _line(0, SweepRunStatus.FAILED, None, error="no file [/data] [red]x")
    run = run.model_copy(update={"swept": {"path": "[/data]", "tag": "[bold]"}})
    summary = SweepSummary(
        sweep_id="sw",
        execution_arn="arn",
        verdict=SweepVerdict.FAILED,
        message="0 of 1 runs succeeded: [/data] missing",
        counts=SweepCounts(total=1, failed=1),
        tolerated_failure_percentage=0,
        stop_on_failure=False,
        runs=[run],
        written_at=datetime(2026, 11, 23, tzinfo=UTC).isoformat(),
    )
    console = Console(record=True, width=200)

    console.print(sweep_summary_table(summary))

    text = console.export_text()
    assert "[/data] missing" in text
    assert "[bold]" in text
    assert "no file [/data] [red]x" in text


class _FailingLambda:
    def invoke(self, **request: Any) -> dict[str, Any]:
        body = b'{"errorType": "SweepNotFound", "errorMessage": "no sweep \'nope\'"}'
        return {"FunctionError": "Unhandled", "Payload": io.BytesIO(body)}


class _Files:
    """SweepFiles whose plan appears after `missing` reads."""

    def __init__(self, missing: int) -> None:
        self.missing = missing
        self.reads = 0

    def plan(self, sweep_id: str) -> object:
        self.reads += 1
        if self.reads <= self.missing:
            raise SweepNotFoundInS3(f"no sweep {sweep_id!r}")
        return object()

    def summary(self, sweep_id: str) -> None:
        return None


class _Sfn:
    class exceptions:
        ExecutionDoesNotExist = type("ExecutionDoesNotExist", (Exception,), {})

    def __init__(self, status: str) -> None:
        self.status = status

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return {"status": self.status}


def _cancel(files: _Files, sfn: _Sfn, lambda_client: Any) -> Any:
    arn = "arn:aws:states:us-east-1:1:stateMachine:Sweep"
    return cancel_sweep(sfn, files, arn, lambda_client, "StopSweep", "nope", poll_seconds=0)  # type: ignore[arg-type]


def test_cancelling_an_unknown_sweep_says_what_stop_sweep_said():
    with pytest.raises(AwsRequestFailed, match="StopSweep could not cancel nope: no sweep 'nope'"):
        _cancel(_Files(missing=0), _Sfn("RUNNING"), _FailingLambda())


def test_a_cancel_right_after_the_start_waits_for_the_plan_then_cancels():
    files = _Files(missing=2)

    with pytest.raises(AwsRequestFailed, match="StopSweep could not cancel"):
        _cancel(files, _Sfn("RUNNING"), _FailingLambda())

    assert files.reads == 3  # waited for the plan, then invoked StopSweep


def test_a_sweep_that_ended_before_planning_has_nothing_to_cancel():
    answer = _cancel(_Files(missing=10), _Sfn("FAILED"), lambda_client=None)

    assert answer.message == "sweep nope ended before it planned any run: nothing to cancel"
    assert answer.stop is None


def test_given_a_local_data_folder_then_only_a_local_sweep_takes_it_with_its_uploaded_uri(
    tmp_path,
):
    # Given a script and a local data folder
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "ds").mkdir()
    request = RunRequest(tmp_path / "train.py", data=(str(tmp_path / "ds"),))
    options = SweepOptions(grid=("lr=0.1,0.2",))

    # Then a cloud sweep refuses it, and a local one puts the uploaded prefix in the base spec
    with pytest.raises(SpecError, match="is a local path"):
        prepare_sweep(request, options)
    prepared = prepare_sweep(request, options, local_data=True)
    uploaded = "s3://runctl-local-bucket/data/local/" + "c" * 64 + "/"
    spec = prepared.spec("s3://runctl-local-bucket/code/" + "a" * 64 + ".tar.gz", {"ds": uploaded})
    assert [(item.name, item.s3_uri) for item in spec.base_spec.data] == [("ds", uploaded)]
